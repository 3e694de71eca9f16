"""Settings shared by every test directory.

Hypothesis: no per-example deadline. A deadline measures the machine, not the code: the suite
shares 2 cores with browsers, servers and other tests, and an example that ran 200 ms late there
failed a test whose property held (``test_rtcp_twcc::test_round_trip``, once, on a loaded VM).
Every test is still bounded by its example count and by the suite's timeouts.
"""

from hypothesis import settings

settings.register_profile("zvonok", deadline=None)
settings.load_profile("zvonok")
