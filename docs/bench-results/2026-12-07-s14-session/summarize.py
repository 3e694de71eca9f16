import json,glob,statistics,sys,os
D=sys.argv[1]
for sc in ['calls-1to1-x25','mesh-4','fanout-2x20','idle-200']:
    for tree in ['base','final']:
        fs=sorted(glob.glob(f'{D}/{sc}-{tree}-*.json'))
        if not fs: continue
        ds=[json.load(open(f)) for f in fs]
        if sc=='idle-200':
            v=[d['server_cpu_percent'] for d in ds]
            print(sc,tree,'cpu% med',statistics.median(v),v,'rss',[d['server_rss_mb'] for d in ds],'kB/sess',[d['server_rss_per_session_kb'] for d in ds],'empty',[d['server_rss_empty_mb'] for d in ds])
        else:
            v=[d['cpu_us_per_delivered_packet'] for d in ds]
            p99=[d['sfu_latency_ms']['p99'] for d in ds]
            p50=[d['sfu_latency_ms']['p50'] for d in ds]
            p95=[d['sfu_latency_ms']['p95'] for d in ds]
            mx=[d['sfu_latency_ms']['max'] for d in ds]
            dr=[(d['delivery_ratio']['audio'],d['delivery_ratio']['video']) for d in ds]
            us=[round(d['server_cpu_user_s']*1e6/sum(d['delivered'].values()),1) for d in ds]
            sy=[round(d['server_cpu_system_s']*1e6/sum(d['delivered'].values()),1) for d in ds]
            print(sc,tree,'us/pkt med',statistics.median(v),v,'| p99 med',statistics.median(p99),p99,'| p50/p95 med',statistics.median(p50),statistics.median(p95),'| max',mx,'| user/sys us',us,sy,'| deliv',set(dr),'| pkt/s',[d['delivered_per_s'] for d in ds])
