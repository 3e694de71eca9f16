import collections,sys
f=sys.argv[1]; anchor=sys.argv[2]; depth=int(sys.argv[3]) if len(sys.argv)>3 else 2
tot=0; c=collections.Counter(); under=0
for line in open(f):
    stack,_,n=line.rstrip().rpartition(' '); n=int(n); tot+=n
    fr=[x.split(' (')[0] for x in stack.split(';')]
    if anchor in fr:
        i=fr.index(anchor); under+=n
        key=tuple(fr[i+1:i+1+depth]); c[key]+=n
print('total',tot,'under',anchor,under, '%.1f%%'%(100*under/tot))
for k,n in c.most_common(45): print('%5.1f%% %s'%(100*n/tot,' > '.join(k) or '<self>'))
