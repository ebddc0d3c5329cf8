#!/usr/bin/python3
"""The FHIR patient+code search's SQL alone, as src/fhir/index.c hdx_fhir_index_query builds it,
against rewrites, on a synthetic fhir.db with the same schema (docs/PERFORMANCE.md, "Issue 13's
benchmarks: FHIR"). N Observations of P patients, 5 codes in turn (as an ORU^R01 of hdx sim's
shape gives), a code and a category token each. Python's sqlite3 is the system SQLite (3.40 on
Debian 12), the library hdxd links.

  /usr/bin/python3 bench/fhir_search_sql.py [N=1000000] [P=1000] [SEARCHES=200] [DB=/tmp/fhir_search_sql.db]

Builds DB once (about a minute for 1M), then times SEARCHES searches per form: every row of
the answer stepped (hdxd steps through all of them to count `total`), p50/p99 in ms.
"""
import os, random, sqlite3, sys, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
P = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
S = int(sys.argv[3]) if len(sys.argv) > 3 else 200
path = sys.argv[4] if len(sys.argv) > 4 else "/tmp/fhir_search_sql.db"
fresh = not os.path.exists(path)
db = sqlite3.connect(path)
if fresh:
    db.executescript("""PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
CREATE TABLE fhir_res(rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
 seq INTEGER NOT NULL, part INTEGER NOT NULL, current INTEGER NOT NULL, deleted INTEGER NOT NULL,
 updated INTEGER NOT NULL, patient BLOB, date_lo INTEGER, date_hi INTEGER, UNIQUE(type, id, version));
CREATE INDEX fhir_res_patient ON fhir_res(type, patient, date_lo) WHERE current = 1 AND deleted = 0;
CREATE INDEX fhir_res_date ON fhir_res(type, date_lo) WHERE current = 1 AND deleted = 0;
CREATE INDEX fhir_res_updated ON fhir_res(type, updated);
CREATE TABLE fhir_tok(param INTEGER NOT NULL, tok BLOB NOT NULL, rid INTEGER NOT NULL,
 PRIMARY KEY(param, tok, rid)) WITHOUT ROWID;
CREATE TABLE bench_keys(patient BLOB, code BLOB);""")
    rnd = random.Random(1)
    pats = [rnd.randbytes(32) for _ in range(P)]
    codes = [rnd.randbytes(32) for _ in range(5)]
    cat = rnd.randbytes(32)
    with db:
        for i in range(N):
            m, k = divmod(i, 5)
            db.execute("INSERT INTO fhir_res VALUES(?, 'Observation', ?, 1, ?, ?, 1, 0, ?, ?, ?, ?)",
                       (i + 1, "v2-%d-%d" % (m, k + 1), m, k + 1, m, pats[m % P], m * 1000, m * 1000))
            db.execute("INSERT INTO fhir_tok VALUES(1, ?, ?)", (codes[k], i + 1))
            db.execute("INSERT INTO fhir_tok VALUES(2, ?, ?)", (cat, i + 1))
        for p in pats:
            db.execute("INSERT INTO bench_keys VALUES(?, ?)", (p, codes[0]))
pats = [r[0] for r in db.execute("SELECT patient FROM bench_keys")]
code = db.execute("SELECT code FROM bench_keys LIMIT 1").fetchone()[0]
cols = "type, id, version, seq, part, deleted, current, updated, patient"
base = "SELECT " + cols + " FROM fhir_res WHERE type = ? AND current = 1 AND deleted = 0 AND patient = ?"
forms = [
    ("in_subquery (hdxd now)", base + " AND rid IN (SELECT rid FROM fhir_tok WHERE param = ? AND tok IN (?))"
     " ORDER BY rid ASC", None),
    ("exists", base + " AND EXISTS (SELECT 1 FROM fhir_tok t WHERE t.param = ? AND t.tok IN (?)"
     " AND t.rid = fhir_res.rid) ORDER BY rid ASC", None),
    ("exists + index (type, patient)", base + " AND EXISTS (SELECT 1 FROM fhir_tok t WHERE t.param = ?"
     " AND t.tok IN (?) AND t.rid = fhir_res.rid) ORDER BY rid ASC",
     "CREATE INDEX IF NOT EXISTS fhir_res_pat_rid ON fhir_res(type, patient) WHERE current = 1 AND deleted = 0"),
]
for name, q, ddl in forms:
    if ddl:
        db.execute(ddl)
    plan = "; ".join(r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + q, ("Observation", pats[0], 1, code)))
    ts, n = [], 0
    for j in range(S):
        t = time.perf_counter()
        n = sum(1 for _ in db.execute(q, ("Observation", pats[j % P], 1, code)))
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    print("fhir_sql form=%r N=%d P=%d rows_per_search=%d p50_ms=%.3f p99_ms=%.3f plan=%r"
          % (name, N, P, n, ts[len(ts) // 2], ts[min(len(ts) - 1, int(len(ts) * 0.99))], plan))
db.execute("DROP INDEX IF EXISTS fhir_res_pat_rid")  # the next run starts from hdxd's schema
