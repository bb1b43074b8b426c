"""FTS5 removals with and without contentless_delete (docs/BENCHMARKS.md, round eight).

Usage: pip install pysqlite3-binary; python3 docs/bench/fts5-deletes.py VARIANT
VARIANT: default (contentless_delete = 1), merged (optimize first), automerge0, nodelete
(a contentless table told the old values, as migration 0018 does).
"""
import pysqlite3 as sqlite3, time, sys, os
variant = sys.argv[1]
path = f"/tmp/fts5-deletes-{variant}.db"
for f in (path, path+"-wal", path+"-shm"):
    if os.path.exists(f): os.remove(f)
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL")
cd = ", contentless_delete = 1" if variant != "nodelete" else ""
db.execute(f"CREATE VIRTUAL TABLE s USING fts5(name, endpoint, description, tags, version, tokenize='trigram', content=''{cd})")
if variant == "automerge0":
    db.execute("INSERT INTO s(s, rank) VALUES('automerge', 0)")
if variant == "crisis64":
    db.execute("INSERT INTO s(s, rank) VALUES('crisismerge', 64)")
N = 100000
def doc(i, v): return (i, f"edge-{i:06d}", f"http://127.0.0.{i%250+1}:{10000+i%50000}", "", "zone-b line-2", v)
for c in range(0, N, 200):
    db.execute("BEGIN")
    db.executemany("INSERT INTO s(rowid,name,endpoint,description,tags,version) VALUES (?,?,?,?,?,?)", [doc(i, "") for i in range(c, min(c+200, N))])
    db.execute("COMMIT")
if variant == "merged":
    db.execute("INSERT INTO s(s) VALUES('optimize')")
times = []
t0 = time.time()
for c in range(0, N, 16):
    db.execute("BEGIN")
    for i in range(c, min(c+16, N)):
        st = time.perf_counter()
        if variant == "nodelete":
            d = doc(i, "")
            db.execute("INSERT INTO s(s, rowid,name,endpoint,description,tags,version) VALUES ('delete',?,?,?,?,?,?)", d)
        else:
            db.execute("DELETE FROM s WHERE rowid=?", (i,))
        db.execute("INSERT INTO s(rowid,name,endpoint,description,tags,version) VALUES (?,?,?,?,?,?)", doc(i, "3.6.0"))
        times.append((time.perf_counter()-st)*1000)
    st = time.perf_counter(); db.execute("COMMIT"); times.append((time.perf_counter()-st)*1000)
times.sort()
print(variant, f"total {time.time()-t0:.1f}s", "p50 %.3f p99 %.3f p999 %.2f max %.1f ms" % (times[len(times)//2], times[int(len(times)*.99)], times[int(len(times)*.999)], times[-1]), "over 50ms:", sum(1 for t in times if t>50))
