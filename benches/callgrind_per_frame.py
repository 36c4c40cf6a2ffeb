#!/usr/bin/env python3
"""Instructions per frame from two callgrind runs of ptnet-bench that differ only in --frames.

    callgrind_per_frame.py SMALL.out LARGE.out FRAME_DIFFERENCE INCLUSIVE(0|1) TOP

Prints, per function, (Ir in LARGE - Ir in SMALL) / FRAME_DIFFERENCE: set-up and tear-down
cancel out. Give one thread's files (--separate-threads=yes writes one per thread). See
BENCHMARKS.md for the commands.
"""
import subprocess,re,sys
def load(f, incl):
    out=subprocess.run(["callgrind_annotate","--inclusive="+("yes" if incl else "no"),"--threshold=100",f],capture_output=True,text=True).stdout
    d={}
    for line in out.splitlines():
        m=re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$",line)
        if m:
            name=m.group(2)
            name=re.sub(r" \[.*\]$","",name)
            name=re.sub(r"^.*?:(?=[A-Za-z_<])","",name,count=1) if ":" in name else name
            v=int(m.group(1).replace(",",""))
            # A function appears once per source file its code came from: exclusive costs add
            # up, an inclusive cost is the same total listed again.
            d[name]=max(d.get(name,0),v) if incl else d.get(name,0)+v
    return d
a,b,n,incl,top=sys.argv[1],sys.argv[2],int(sys.argv[3]),sys.argv[4]=="1",int(sys.argv[5])
da,db=load(a,incl),load(b,incl)
rows=sorted(((db.get(k,0)-da.get(k,0))/n,k) for k in set(da)|set(db))
for v,k in rows[::-1][:top]:
    print(f"{v:9.1f}  {k[:170]}")
