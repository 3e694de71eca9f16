import collections,sys
f=sys.argv[1]; anchor=sys.argv[2] if len(sys.argv)>2 else 'Runner.run (asyncio/runners.py:118)'
depth=int(sys.argv[3]) if len(sys.argv)>3 else 2
tot=0; c=collections.Counter()
for line in open(f):
    stack,_,n=line.rstrip().rpartition(' '); n=int(n); tot+=n
    fr=stack.split(';')
    if anchor in fr:
        i=fr.index(anchor)
        key=tuple(x.split(' (')[0] for x in fr[i+1:i+1+depth])
        c[key]+=n
print('total',tot)
for k,n in c.most_common(40): print('%5.1f%% %s'%(100*n/tot,' > '.join(k) or '<native>'))
