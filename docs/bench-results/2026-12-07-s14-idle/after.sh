#!/bin/bash
# waits for rest.sh (by pid), then the py-spy run of the new code and two post-rebase pairs
while kill -0 14837 2>/dev/null; do sleep 5; done
echo "$(date -u +%T) spy new"; /tmp/h2/spy.sh /tmp/h2/new new
/tmp/h2/run2.sh /tmp/h2/main2 /tmp/h2/new2 2
