/* SQLite and LMDB next to mace-storage, on the same data, in the same run: the rows of
 * docs/PERFORMANCE.md that check each "we lead this row" against the real alternatives.
 * scripts/bench.sh builds it (C99, -Wall -Werror, against libmace_storage.a, -lsqlite3 -llmdb) and
 * runs it on the checked-1.1 file that benches/storage.rs leaves with --keep.
 *
 *   baselines [--reps N] [--warm-only] DIR/checked-1.1.bin
 *
 * It reads the entries through our own store (mace_storage_for_each), imports them once, untimed,
 * into DIR/baselines.sqlite (table kv(key BLOB PRIMARY KEY, value BLOB)) and DIR/baselines.lmdb
 * (one environment file, MDB_NOSUBDIR), then measures, each figure the median of N repetitions and
 * each ratio the median of the per-repetition ratios against the baseline measured back to back
 * (alternating which goes first), as benches/storage.rs does:
 *   - open + get of 30 of the 300 values (every tenth entry in file order, as benches/storage.rs
 *     picks them), cold and warm cache, against open + pread of exactly those 30 values;
 *   - open + get of every entry, against a bare read() of the file;
 *   - a durable rewrite of all 300 entries, against write + fsync of the file's bytes to a new file.
 * Rows of other stores say "for comparison" where ours say their target. */
#define _GNU_SOURCE /* memmem */
#include <fcntl.h>
#include <lmdb.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mace_storage.h"

/* Bytes of mapping for the LMDB environments: room for the 30 MB and LMDB's pages around them. */
#define LMDB_MAP_SIZE ((size_t)256 << 20)
/* How many values a model uses of the 300, as benches/storage.rs measures it. */
#define USED 30

/* ---- How ours is opened: the one place to choose it. -------------------------------------------
 * Every measurement of mace-storage opens through ours_options. A lazily verified open (each
 * value checksummed, or read, on its first get) has no field in MaceStorageOptions yet; once the
 * header has `verify` (0 default, 1 eager, 2 lazy), scripts/bench.sh defines
 * BASELINES_HAVE_VERIFY and every "ours" row is measured twice, eager and lazy. */
enum ours_mode { OURS_DEFAULT, OURS_EAGER, OURS_LAZY };

static void ours_options(MaceStorageOptions *o, enum ours_mode mode) {
  memset(o, 0, sizeof *o); /* zeroed: every default, as an app opens its cache */
  o->quiet = 1;
#ifdef BASELINES_HAVE_VERIFY
  o->verify = mode == OURS_LAZY ? 2 : mode == OURS_EAGER ? 1 : 0;
#else
  (void)mode;
#endif
}

#ifdef BASELINES_HAVE_VERIFY
static const enum ours_mode ours_modes[] = {OURS_EAGER, OURS_LAZY};
static const char *const ours_labels[] = {", eager verify", ", lazy verify"};
#else
static const enum ours_mode ours_modes[] = {OURS_DEFAULT};
static const char *const ours_labels[] = {""};
#endif
#define OURS_MODES ((int)(sizeof ours_modes / sizeof ours_modes[0]))

/* ---- Small helpers. ---------------------------------------------------------------------------- */

static void die(const char *what, const char *detail) {
  fprintf(stderr, "baselines: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(2);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) die("out of memory", NULL);
  return p;
}

static char *path_in(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* A bare read of the whole file into one exact-size buffer (the baseline of a full open). */
static uint8_t *bare_read(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) die("cannot open", path);
  size_t size = (size_t)st.st_size, done = 0;
  uint8_t *buf = xmalloc(size);
  while (done < size) {
    ssize_t n = read(fd, buf + done, size - done);
    if (n <= 0) die("cannot read", path);
    done += (size_t)n;
  }
  close(fd);
  *len = size;
  return buf;
}

static void write_synced(const char *path, const uint8_t *bytes, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot create", path);
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, bytes + done, len - done);
    if (n <= 0) die("cannot write", path);
    done += (size_t)n;
  }
  if (fsync(fd) != 0) die("cannot fsync", path);
  close(fd);
}

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* Empties the page cache (needs root); 0 when the kernel refuses. */
static int drop_caches(void) {
  sync();
  FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
  if (f == NULL) return 0;
  int ok = fputs("3", f) >= 0;
  return fclose(f) == 0 && ok;
}

/* Reads every byte of a value the way its consumer would (8 bytes at a time; the tail bytewise):
 * for LMDB, whose values are pointers into its mapping, this is where the pages are read. */
static volatile uint64_t sink;

static uint64_t touch(const uint8_t *p, size_t n) {
  uint64_t sum = 0, w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    sum += w;
  }
  for (; i < n; i++) sum += p[i];
  return sum;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- The data. --------------------------------------------------------------------------------- */

typedef struct {
  uint8_t *key, *value;
  size_t key_len, value_len;
  size_t offset; /* where the value lies in the checked-1.1 file */
} Entry;

typedef struct {
  Entry *e;
  size_t n, cap;
} Entries;

static int32_t collect(const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                       void *user) {
  Entries *es = user;
  if (es->n == es->cap) {
    es->cap = es->cap ? 2 * es->cap : 512;
    es->e = realloc(es->e, es->cap * sizeof *es->e);
    if (es->e == NULL) die("out of memory", NULL);
  }
  Entry *e = &es->e[es->n++];
  e->key = xmalloc(key_len);
  e->value = xmalloc(value_len);
  memcpy(e->key, key, key_len);
  memcpy(e->value, value, value_len);
  e->key_len = key_len;
  e->value_len = value_len;
  e->offset = 0;
  return 0;
}

static int cmp_offset(const void *a, const void *b) {
  const Entry *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The entries of `path` through our own store, each with its value's offset in the file (a
 * checked-1.1 record holds its value verbatim), in file order. */
static Entries load_entries(const char *path) {
  MaceStorageOptions o;
  MaceStorage *s = NULL;
  Entries es = {NULL, 0, 0};
  ours_options(&o, OURS_EAGER);
  o.read_only = 1;
  if (mace_storage_open(path, &o, &s) != MACE_STORAGE_OK) die("cannot open", path);
  MaceStorageOpenReport r;
  mace_storage_open_findings(s, &r);
  if (!r.intact || r.format != MACE_STORAGE_FORMAT_CHECKED_1_1)
    die("not an intact checked-1.1 file", path);
  if (mace_storage_for_each(s, collect, &es) != MACE_STORAGE_OK) die("for_each failed", path);
  mace_storage_close(s);
  size_t len;
  uint8_t *file = bare_read(path, &len);
  for (size_t i = 0; i < es.n; i++) {
    Entry *e = &es.e[i];
    const uint8_t *at = memmem(file, len, e->value, e->value_len);
    if (at == NULL || e->value_len == 0) die("a value is not stored verbatim in", path);
    e->offset = (size_t)(at - file);
    /* Short values could in principle occur twice; the offset must be the value's own. */
    if (e->value_len < 4096 && memmem(at + 1, len - e->offset - 1, e->value, e->value_len))
      die("a short value occurs twice in", path);
  }
  free(file);
  qsort(es.e, es.n, sizeof *es.e, cmp_offset);
  return es;
}

/* ---- SQLite and LMDB: import once, untimed. ---------------------------------------------------- */

static void sql_exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) die(sql, err);
}

static sqlite3 *sql_open(const char *path) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
    die("sqlite3_open_v2", db ? sqlite3_errmsg(db) : path);
  return db;
}

static sqlite3_stmt *sql_prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die(sql, sqlite3_errmsg(db));
  return st;
}

static void sql_insert_all(sqlite3 *db, const Entries *es) {
  sqlite3_stmt *ins = sql_prepare(db, "INSERT INTO kv(key, value) VALUES (?1, ?2)");
  for (size_t i = 0; i < es->n; i++) {
    sqlite3_bind_blob(ins, 1, es->e[i].key, (int)es->e[i].key_len, SQLITE_STATIC);
    sqlite3_bind_blob(ins, 2, es->e[i].value, (int)es->e[i].value_len, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE) die("INSERT", sqlite3_errmsg(db));
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
}

/* SQLite's defaults (rollback journal, 4 KiB pages) for the read rows. */
static void sqlite_import(const char *path, const Entries *es) {
  unlink(path);
  sqlite3 *db = sql_open(path);
  sql_exec(db, "CREATE TABLE kv(key BLOB PRIMARY KEY, value BLOB)");
  sql_exec(db, "BEGIN");
  sql_insert_all(db, es);
  sql_exec(db, "COMMIT");
  sqlite3_close(db);
}

static void lmdb_check(int rc, const char *what) {
  if (rc != MDB_SUCCESS) die(what, mdb_strerror(rc));
}

static void lmdb_remove(const char *path) {
  char lock[4096];
  snprintf(lock, sizeof lock, "%s-lock", path);
  unlink(path);
  unlink(lock);
}

/* A fresh environment at `path` holding every entry, one durable commit. */
static void lmdb_write_all(const char *path, const Entries *es) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  lmdb_check(mdb_env_create(&env), "mdb_env_create");
  lmdb_check(mdb_env_set_mapsize(env, LMDB_MAP_SIZE), "mdb_env_set_mapsize");
  lmdb_check(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), "mdb_env_open");
  lmdb_check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
  lmdb_check(mdb_dbi_open(txn, NULL, 0, &dbi), "mdb_dbi_open");
  for (size_t i = 0; i < es->n; i++) {
    MDB_val k = {es->e[i].key_len, es->e[i].key}, v = {es->e[i].value_len, es->e[i].value};
    lmdb_check(mdb_put(txn, dbi, &k, &v, 0), "mdb_put");
  }
  lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit"); /* without MDB_NOSYNC: data, then meta, synced */
  mdb_env_close(env);
}

/* ---- The measured operations. ------------------------------------------------------------------ */

/* What a read measurement works on: the file, the keys to get (every entry, or the 30). */
typedef struct {
  const char *file;   /* the checked-1.1 file */
  const char *sqlite; /* the SQLite database */
  const char *lmdb;   /* the LMDB environment file */
  const Entry **keys; /* the entries to get */
  size_t nkeys;
  enum ours_mode mode;
  int cold;
} Reads;

static void expect_bytes(uint64_t got, const Reads *r, const char *who) {
  uint64_t want = 0;
  for (size_t i = 0; i < r->nkeys; i++) want += r->keys[i]->value_len;
  if (got != want) die("a store returned other values than it was given", who);
}

static double ours_gets(const Reads *r) {
  MaceStorageOptions o;
  MaceStorage *s = NULL;
  MaceStorageValue **vals = xmalloc(r->nkeys * sizeof *vals);
  uint64_t bytes = 0;
  ours_options(&o, r->mode);
  double t = now_ms();
  if (mace_storage_open(r->file, &o, &s) != MACE_STORAGE_OK) die("mace_storage_open", r->file);
  for (size_t i = 0; i < r->nkeys; i++) {
    size_t len;
    if (mace_storage_get(s, r->keys[i]->key, r->keys[i]->key_len, &vals[i]) != MACE_STORAGE_OK)
      die("mace_storage_get missed a key", NULL);
    mace_storage_value_data(vals[i], &len);
    bytes += len;
  }
  t = now_ms() - t;
  for (size_t i = 0; i < r->nkeys; i++) mace_storage_value_free(vals[i]);
  mace_storage_close(s);
  free(vals);
  expect_bytes(bytes, r, "mace-storage");
  return t;
}

/* The baseline of a partial open: open the file, pread exactly the values wanted, close. */
static double pread_gets(const Reads *r) {
  uint8_t **bufs = xmalloc(r->nkeys * sizeof *bufs);
  for (size_t i = 0; i < r->nkeys; i++) bufs[i] = NULL;
  double t = now_ms();
  int fd = open(r->file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("cannot open", r->file);
  for (size_t i = 0; i < r->nkeys; i++) {
    const Entry *e = r->keys[i];
    bufs[i] = xmalloc(e->value_len);
    if (pread(fd, bufs[i], e->value_len, (off_t)e->offset) != (ssize_t)e->value_len)
      die("short pread", r->file);
  }
  close(fd);
  t = now_ms() - t;
  for (size_t i = 0; i < r->nkeys; i++) {
    if (memcmp(bufs[i], r->keys[i]->value, r->keys[i]->value_len) != 0) die("pread: other bytes", NULL);
    free(bufs[i]);
  }
  free(bufs);
  return t;
}

static double read_whole(const Reads *r) {
  size_t len;
  double t = now_ms();
  uint8_t *b = bare_read(r->file, &len);
  t = now_ms() - t;
  free(b);
  return t;
}

/* sqlite3_open_v2 + one prepared SELECT per key; each blob is complete in SQLite's memory once
 * sqlite3_column_blob returns (it assembles the value from its overflow pages). */
static double sqlite_gets(const Reads *r) {
  sqlite3 *db = NULL;
  uint64_t bytes = 0;
  double t = now_ms();
  if (sqlite3_open_v2(r->sqlite, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
    die("sqlite3_open_v2", r->sqlite);
  sqlite3_stmt *sel = sql_prepare(db, "SELECT value FROM kv WHERE key = ?1");
  for (size_t i = 0; i < r->nkeys; i++) {
    sqlite3_bind_blob(sel, 1, r->keys[i]->key, (int)r->keys[i]->key_len, SQLITE_STATIC);
    if (sqlite3_step(sel) != SQLITE_ROW) die("SELECT missed a key", sqlite3_errmsg(db));
    const void *v = sqlite3_column_blob(sel, 0);
    int n = sqlite3_column_bytes(sel, 0);
    if (v == NULL) die("SELECT: no blob", NULL);
    bytes += (uint64_t)n;
    sqlite3_reset(sel);
  }
  t = now_ms() - t;
  sqlite3_finalize(sel);
  sqlite3_close(db);
  expect_bytes(bytes, r, "SQLite");
  return t;
}

/* mdb_env_open + a read transaction + one mdb_get per key, every byte of each value read (the
 * values are pointers into the mapping: without the touch nothing would be read from the file). */
static double lmdb_gets(const Reads *r) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  uint64_t bytes = 0, sum = 0;
  double t = now_ms();
  lmdb_check(mdb_env_create(&env), "mdb_env_create");
  lmdb_check(mdb_env_open(env, r->lmdb, MDB_NOSUBDIR | MDB_RDONLY, 0644), "mdb_env_open");
  lmdb_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
  lmdb_check(mdb_dbi_open(txn, NULL, 0, &dbi), "mdb_dbi_open");
  for (size_t i = 0; i < r->nkeys; i++) {
    MDB_val k = {r->keys[i]->key_len, r->keys[i]->key}, v;
    lmdb_check(mdb_get(txn, dbi, &k, &v), "mdb_get");
    sum += touch(v.mv_data, v.mv_size);
    bytes += v.mv_size;
  }
  t = now_ms() - t;
  sink = sum;
  mdb_txn_abort(txn);
  mdb_env_close(env);
  expect_bytes(bytes, r, "LMDB");
  return t;
}

/* Before each side of a read measurement: the page cache emptied (cold), or holding every file
 * the measurement may read (warm), so both sides start from the same state. */
static void prep_reads(const Reads *r) {
  if (r->cold) {
    if (!drop_caches()) die("cannot drop the page cache", NULL);
    return;
  }
  const char *files[] = {r->file, r->sqlite, r->lmdb};
  for (int i = 0; i < 3; i++) {
    size_t len;
    free(bare_read(files[i], &len));
  }
}

typedef double (*ReadFn)(const Reads *);

/* A row's name, figures and verdict. target <= 0: another store's row, "for comparison". */
static void compare_reads(const char *name, const char *base_name, double target, int reps,
                          const Reads *r, ReadFn ours, ReadFn base) {
  double *o = xmalloc((size_t)reps * sizeof *o), *b = xmalloc((size_t)reps * sizeof *b),
         *q = xmalloc((size_t)reps * sizeof *q);
  for (int i = 0; i < reps; i++) {
    /* Alternate which goes first, so neither always meets the other's leftovers. */
    if (i % 2 == 0) {
      prep_reads(r);
      o[i] = ours(r);
      prep_reads(r);
      b[i] = base(r);
    } else {
      prep_reads(r);
      b[i] = base(r);
      prep_reads(r);
      o[i] = ours(r);
    }
    q[i] = o[i] / b[i];
  }
  double mo = median(o, reps), mb = median(b, reps), mq = median(q, reps);
  if (target > 0)
    printf("| %s | %.2f ms | %s %.2f ms | %.2fx | <= %gx | %s |\n", name, mo, base_name, mb, mq, target,
           mq <= target ? "yes" : "no");
  else
    printf("| %s | %.2f ms | %s %.2f ms | %.2fx | for comparison | for comparison |\n", name, mo,
           base_name, mb, mq);
  fflush(stdout);
  free(o);
  free(b);
  free(q);
}

/* ---- Durable rewrites. ------------------------------------------------------------------------- */

typedef struct {
  const Entries *es;
  const uint8_t *file_bytes; /* the checked-1.1 file, for the write + fsync baseline */
  size_t file_len;
  const char *plain;   /* the baseline's new file */
  MaceStorage *ours;   /* open on a copy of the checked-1.1 file */
  sqlite3 *sqlite;     /* open, WAL, synchronous=FULL */
  int checkpoint_in_prep; /* SQLite's checkpoint left out of the timed commit, run before each side */
  const char *lmdb;    /* the fresh environment's path */
} Rewrite;

static double write_fsync(const Rewrite *w) {
  double t = now_ms();
  write_synced(w->plain, w->file_bytes, w->file_len);
  return now_ms() - t;
}

static double ours_rewrite(const Rewrite *w) {
  double t = now_ms();
  if (mace_storage_clear(w->ours) != MACE_STORAGE_OK)
    die("mace_storage_clear", mace_storage_last_error(w->ours));
  for (size_t i = 0; i < w->es->n; i++) {
    const Entry *e = &w->es->e[i];
    if (mace_storage_put(w->ours, e->key, e->key_len, e->value, e->value_len) != MACE_STORAGE_OK)
      die("mace_storage_put", mace_storage_last_error(w->ours));
  }
  if (mace_storage_flush(w->ours) != MACE_STORAGE_OK)
    die("mace_storage_flush", mace_storage_last_error(w->ours));
  return now_ms() - t;
}

static double sqlite_rewrite(const Rewrite *w) {
  double t = now_ms();
  sql_exec(w->sqlite, "BEGIN");
  sql_exec(w->sqlite, "DELETE FROM kv");
  sql_insert_all(w->sqlite, w->es);
  sql_exec(w->sqlite, "COMMIT");
  return now_ms() - t;
}

static double lmdb_rewrite(const Rewrite *w) {
  double t = now_ms();
  lmdb_write_all(w->lmdb, w->es);
  return now_ms() - t;
}

/* Before each side: no file left from the last baseline write or fresh environment, and nothing
 * dirty in the page cache, so each side pays for its own writes only. */
static void prep_rewrite(const Rewrite *w) {
  if (w->checkpoint_in_prep) sql_exec(w->sqlite, "PRAGMA wal_checkpoint(TRUNCATE)");
  unlink(w->plain);
  lmdb_remove(w->lmdb);
  sync();
}

typedef double (*RewriteFn)(const Rewrite *);

static void compare_rewrite(const char *name, double target, int reps, const Rewrite *w,
                            RewriteFn ours) {
  double *o = xmalloc((size_t)reps * sizeof *o), *b = xmalloc((size_t)reps * sizeof *b),
         *q = xmalloc((size_t)reps * sizeof *q);
  for (int i = 0; i < reps; i++) {
    if (i % 2 == 0) {
      prep_rewrite(w);
      o[i] = ours(w);
      prep_rewrite(w);
      b[i] = write_fsync(w);
    } else {
      prep_rewrite(w);
      b[i] = write_fsync(w);
      prep_rewrite(w);
      o[i] = ours(w);
    }
    q[i] = o[i] / b[i];
  }
  double mo = median(o, reps), mb = median(b, reps), mq = median(q, reps);
  if (target > 0)
    printf("| durable rewrite of %.1f MB: %s | %.2f ms | write+fsync %.2f ms | %.2fx | <= %gx | %s |\n",
           (double)w->file_len / 1e6, name, mo, mb, mq, target, mq <= target ? "yes" : "no");
  else
    printf("| durable rewrite of %.1f MB: %s | %.2f ms | write+fsync %.2f ms | %.2fx | for comparison "
           "| for comparison |\n", (double)w->file_len / 1e6, name, mo, mb, mq);
  fflush(stdout);
  free(o);
  free(b);
  free(q);
}

/* ---- main. ------------------------------------------------------------------------------------- */

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return path_in(".", "");
  size_t n = (size_t)(slash - path);
  char *d = xmalloc(n + 1);
  memcpy(d, path, n);
  d[n] = '\0';
  return d;
}

static void copy_file(const char *from, const char *to) {
  size_t len;
  uint8_t *b = bare_read(from, &len);
  write_synced(to, b, len);
  free(b);
}

int main(int argc, char **argv) {
  int reps = 7, warm_only = 0, bad = 0;
  const char *file = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--warm-only") == 0)
      warm_only = 1;
    else if (argv[i][0] == '-' || file != NULL)
      bad = 1; /* an unknown option, or a second file */
    else
      file = argv[i];
  }
  if (bad || file == NULL || reps < 1)
    die("usage: baselines [--reps N] [--warm-only] DIR/checked-1.1.bin", NULL);
  char *dir = dir_of(file);
  char *sqlite_path = path_in(dir, "baselines.sqlite");
  char *lmdb_path = path_in(dir, "baselines.lmdb");
  char *lmdb_fresh = path_in(dir, "baselines-rewrite.lmdb");
  char *plain = path_in(dir, "baselines-plain-write.bin");
  char *ours_copy = path_in(dir, "baselines-rewrite.bin");
  char *wal_path = path_in(dir, "baselines.sqlite-wal");
  int cold = !warm_only && drop_caches();

  Entries es = load_entries(file);
  if (es.n < USED) die("too few entries in", file);
  size_t step = es.n / USED;
  const Entry **all = xmalloc(es.n * sizeof *all), *used[USED];
  size_t used_bytes = 0;
  for (size_t i = 0; i < es.n; i++) all[i] = &es.e[i];
  for (size_t i = 0; i < USED; i++) {
    used[i] = &es.e[i * step];
    used_bytes += used[i]->value_len;
  }
  sqlite_import(sqlite_path, &es);
  lmdb_remove(lmdb_path);
  lmdb_write_all(lmdb_path, &es);

  /* What touching the 30 values costs when they are already in memory: the part of LMDB's figure
   * that any consumer reading the bytes pays too. */
  double touch_ms[9];
  for (int i = 0; i < 9; i++) {
    uint64_t sum = 0;
    double t = now_ms();
    for (size_t k = 0; k < USED; k++) sum += touch(used[k]->value, used[k]->value_len);
    touch_ms[i] = now_ms() - t;
    sink = sum;
  }
  printf("baselines: SQLite %s (database %.1f MB), LMDB %d.%d.%d (environment %.1f MB); the %d values: "
         "one entry in %zu (file order), %.1f MB, whose bytes take %.2f ms to read from memory "
         "(part of each LMDB figure); median of %d repetitions\n",
         sqlite3_libversion(), (double)file_size(sqlite_path) / 1e6, MDB_VERSION_MAJOR,
         MDB_VERSION_MINOR, MDB_VERSION_PATCH,
         (double)file_size(lmdb_path) / 1e6, USED, step, (double)used_bytes / 1e6,
         median(touch_ms, 9), reps);
  printf("\n| measurement | ours | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n");
  fflush(stdout);

  /* Each group of rows shares its measurement and baseline: ours first, then SQLite and LMDB. */
  for (int c = cold ? 0 : 1; c < 2; c++) {
    const char *cache = c == 0 ? "cold cache" : "warm cache";
    Reads r = {file, sqlite_path, lmdb_path, used, USED, OURS_DEFAULT, c == 0};
    char group[128], name[256], base[64];
    snprintf(group, sizeof group, "open + get %d of %zu (%.1f MB of values, %s)", USED, es.n,
             (double)used_bytes / 1e6, cache);
    snprintf(base, sizeof base, "open + pread of the %d", USED);
    for (int m = 0; m < OURS_MODES; m++) {
      r.mode = ours_modes[m];
      snprintf(name, sizeof name, "%s: C API%s", group, ours_labels[m]);
      compare_reads(name, base, 1.5, reps, &r, ours_gets, pread_gets);
    }
    snprintf(name, sizeof name, "%s: SQLite, %d SELECTs", group, USED);
    compare_reads(name, base, 0, reps, &r, sqlite_gets, pread_gets);
    snprintf(name, sizeof name, "%s: LMDB, read txn + %d mdb_get, every byte read", group, USED);
    compare_reads(name, base, 0, reps, &r, lmdb_gets, pread_gets);

    r.keys = all;
    r.nkeys = es.n;
    snprintf(group, sizeof group, "open + get of every entry (%s)", cache);
    for (int m = 0; m < OURS_MODES; m++) {
      r.mode = ours_modes[m];
      snprintf(name, sizeof name, "%s: C API%s, checked-1.1", group, ours_labels[m]);
      compare_reads(name, "read()", 1.5, reps, &r, ours_gets, read_whole);
    }
    snprintf(name, sizeof name, "%s: SQLite, %zu SELECTs", group, es.n);
    compare_reads(name, "read()", 0, reps, &r, sqlite_gets, read_whole);
    snprintf(name, sizeof name, "%s: LMDB, read txn + %zu mdb_get, every byte read", group, es.n);
    compare_reads(name, "read()", 0, reps, &r, lmdb_gets, read_whole);
  }

  /* Durable rewrites of all 300 entries. */
  {
    size_t len;
    uint8_t *bytes = bare_read(file, &len);
    Rewrite w = {&es, bytes, len, plain, NULL, NULL, 0, lmdb_fresh};
    MaceStorageOptions o;
    char name[256];
    for (int m = 0; m < OURS_MODES; m++) {
      copy_file(file, ours_copy);
      ours_options(&o, ours_modes[m]);
      if (mace_storage_open(ours_copy, &o, &w.ours) != MACE_STORAGE_OK)
        die("mace_storage_open", ours_copy);
      snprintf(name, sizeof name, "C API%s, clear + put all + flush (atomic replace)", ours_labels[m]);
      compare_rewrite(name, 1.2, reps, &w, ours_rewrite);
      MaceStorageStats st;
      mace_storage_stats(w.ours, &st);
      if (st.rewrites != (uint64_t)reps) die("a flush of ours did not rewrite the file", NULL);
      mace_storage_close(w.ours);
      w.ours = NULL;
    }
    w.sqlite = sql_open(sqlite_path);
    sql_exec(w.sqlite, "PRAGMA journal_mode=WAL");
    sql_exec(w.sqlite, "PRAGMA synchronous=FULL");
    compare_rewrite("SQLite (WAL, synchronous=FULL), DELETE + 300 INSERTs in one transaction", 0,
                    reps, &w, sqlite_rewrite);
    long long db_len = file_size(sqlite_path), wal_len = file_size(wal_path);
    /* The same, the WAL's checkpoint into the database (which the default wal_autocheckpoint runs
     * inside the commit once the WAL passes 1000 pages) moved out of the timing. */
    sql_exec(w.sqlite, "PRAGMA wal_autocheckpoint=0");
    w.checkpoint_in_prep = 1;
    compare_rewrite("SQLite (WAL, synchronous=FULL), the same without its checkpoint", 0, reps, &w,
                    sqlite_rewrite);
    w.checkpoint_in_prep = 0;
    sqlite3_close(w.sqlite);
    w.sqlite = NULL;
    compare_rewrite("LMDB, a fresh environment, 300 mdb_put in one durable commit", 0, reps, &w,
                    lmdb_rewrite);
    printf("\nbaselines: after the rewrites, SQLite database %.1f MB and WAL %.1f MB\n",
           (double)db_len / 1e6, (double)wal_len / 1e6);
    free(bytes);
  }

  /* Leave nothing but what benches/storage.rs left. */
  const char *sqlite_side[] = {"baselines.sqlite", "baselines.sqlite-wal", "baselines.sqlite-shm",
                               "baselines.sqlite-journal"};
  for (int i = 0; i < 4; i++) unlink(path_in(dir, sqlite_side[i]));
  lmdb_remove(lmdb_path);
  lmdb_remove(lmdb_fresh);
  unlink(plain);
  const char *ours_side[] = {"baselines-rewrite.bin", "baselines-rewrite.bin.lock",
                             "baselines-rewrite.bin.tmp"};
  for (int i = 0; i < 3; i++) unlink(path_in(dir, ours_side[i]));
  return 0;
}
