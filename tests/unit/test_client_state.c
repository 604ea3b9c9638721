/* The per-client state store on one rank: fresh flags and zero-fill, persistence
 * across acquires, the memory and hdf5 backends giving identical contents for
 * the same sequence of operations, block get/put for checkpoints, the memory
 * report, the hdf5 backend's per-rank file, and binary16 conversion (round to
 * nearest even) against known values and GCC's _Float16. */
#include <glob.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <mpi.h>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "fl/client_state.h"

static char g_dir[64];

static fh_config *state_config(const char *backend, const char *dir) {
  char b[64], d[256];
  snprintf(b, sizeof b, "state.backend=%s", backend);
  snprintf(d, sizeof d, "state.dir=%s", dir ? dir : "");
  const char *sets[2] = {b, d};
  const fh_key_spec *tables[1] = {fh_state_keys};
  fh_config *cfg = NULL;
  assert_int_equal(fh_config_load(&cfg, NULL, sets, 2, tables, 1), 0);
  return cfg;
}

/* A store of clients 100..100+nlocal-1 of 1000; run folder g_dir/run. */
static fh_client_store *make_store(const char *backend, int nlocal) {
  fh_config *cfg = state_config(backend, NULL);
  char run_dir[128];
  snprintf(run_dir, sizeof run_dir, "%s/run", g_dir);
  fh_client_store *s = NULL;
  assert_int_equal(fh_client_store_create(&s, cfg, MPI_COMM_WORLD, 1000, 100, nlocal, run_dir), 0);
  fh_config_free(cfg);
  return s;
}

static const char *const backends[2] = {"memory", "hdf5"};

static void test_fresh_zero_and_persistence(void **state) {
  (void)state;
  for (int b = 0; b < 2; b++) {
    fh_client_store *s = make_store(backends[b], 20);
    int fc, fn;
    assert_int_equal(fh_client_store_field(s, "alg.c", FH_STATE_F32, 1000, &fc), 0);
    assert_int_equal(fh_client_store_field(s, "alg.count", FH_STATE_I32, 3, &fn), 0);
    assert_int_equal(fh_client_store_nfields(s), 2);
    assert_string_equal(fh_client_store_field_name(s, fn), "alg.count");
    assert_int_equal(fh_client_store_field_len(s, fc), 1000);
    assert_int_equal(fh_client_store_field_type(s, fn), FH_STATE_I32);
    assert_false(fh_client_store_initialised(s, fc, 107));

    int fresh = -1;
    float *c = fh_client_store_acquire(s, fc, 107, &fresh);
    assert_int_equal(fresh, 1);
    for (int i = 0; i < 1000; i++) assert_true(c[i] == 0.0f && !signbit(c[i]));
    for (int i = 0; i < 1000; i++) c[i] = 0.5f * i - 3;
    /* a second field of the same client, held at the same time */
    int32_t *n = fh_client_store_acquire(s, fn, 107, &fresh);
    assert_int_equal(fresh, 1);
    assert_int_equal(n[0] | n[1] | n[2], 0);
    n[2] = 41;
    assert_int_equal(fh_client_store_release(s, fn, 107, 1), 0);
    assert_int_equal(fh_client_store_release(s, fc, 107, 1), 0);
    assert_true(fh_client_store_initialised(s, fc, 107));
    assert_false(fh_client_store_initialised(s, fc, 108));

    for (int rep = 0; rep < 3; rep++) { /* persists, and is no longer fresh */
      c = fh_client_store_acquire(s, fc, 107, &fresh);
      assert_int_equal(fresh, 0);
      for (int i = 0; i < 1000; i++) assert_true(c[i] == 0.5f * i - 3 + rep);
      for (int i = 0; i < 1000; i++) c[i] += 1;
      assert_int_equal(fh_client_store_release(s, fc, 107, 1), 0);
      n = fh_client_store_acquire(s, fn, 107, &fresh);
      assert_int_equal(fresh, 0);
      assert_int_equal(n[2], 41 + rep);
      n[2]++;
      assert_int_equal(fh_client_store_release(s, fn, 107, 1), 0);
    }
    /* a fresh vector released clean is still a zero vector that exists */
    c = fh_client_store_acquire(s, fc, 119, &fresh);
    assert_int_equal(fresh, 1);
    assert_int_equal(fh_client_store_release(s, fc, 119, 0), 0);
    c = fh_client_store_acquire(s, fc, 119, &fresh);
    assert_int_equal(fresh, 0);
    for (int i = 0; i < 1000; i++) assert_true(c[i] == 0.0f);
    assert_int_equal(fh_client_store_release(s, fc, 119, 0), 0);
    /* the first and last client hosted here */
    c = fh_client_store_acquire(s, fc, 100, NULL);
    assert_int_equal(fh_client_store_release(s, fc, 100, 1), 0);
    fh_client_store_free(s);
  }
}

/* One random sequence of acquires (edited and released dirty, or only read and
 * released clean), several fields and types, and block puts that drop some
 * vectors, applied to both backends: every acquired vector, every fresh flag
 * and the final rows are bitwise identical. */
static void test_backends_identical(void **state) {
  (void)state;
  enum { NLOCAL = 37, STEPS = 600 };
  fh_client_store *s[2];
  const fh_state_type types[4] = {FH_STATE_F32, FH_STATE_F16, FH_STATE_F64, FH_STATE_I32};
  const size_t lens[4] = {5000, 3, 700, 1};
  int fid[2][4];
  for (int b = 0; b < 2; b++) {
    s[b] = make_store(backends[b], NLOCAL);
    for (int k = 0; k < 4; k++) {
      char name[16];
      snprintf(name, sizeof name, "f%d", k);
      assert_int_equal(fh_client_store_field(s[b], name, types[k], lens[k], &fid[b][k]), 0);
    }
  }
  fh_rng r;
  fh_rng_init(&r, 5, FH_RNG_TEST, 0, 0);
  size_t maxbytes = 5000 * 8 * NLOCAL;
  unsigned char *row = malloc(maxbytes), *row2 = malloc(maxbytes);
  uint8_t init[NLOCAL], init2[NLOCAL];
  for (int step = 0; step < STEPS; step++) {
    int k = (int)fh_rng_below(&r, 4), client = 100 + (int)fh_rng_below(&r, NLOCAL);
    int op = (int)fh_rng_below(&r, 10);
    size_t bytes = lens[k] * fh_state_type_size(types[k]);
    if (op == 0) { /* restore a block as a checkpoint would, with some rows dropped */
      int first = 100 + (int)fh_rng_below(&r, NLOCAL / 2), count = 1 + (int)fh_rng_below(&r, NLOCAL / 2);
      for (int i = 0; i < count; i++) init[i] = fh_rng_below(&r, 3) != 0;
      for (size_t i = 0; i < count * bytes; i++) row[i] = (unsigned char)fh_rng_below(&r, 256) & 0x3f;
      for (int b = 0; b < 2; b++) assert_int_equal(fh_client_store_put_rows(s[b], fid[b][k], first, count, row, init), 0);
      continue;
    }
    int fresh[2];
    unsigned char *v[2];
    for (int b = 0; b < 2; b++) v[b] = fh_client_store_acquire(s[b], fid[b][k], client, &fresh[b]);
    assert_int_equal(fresh[0], fresh[1]);
    assert_memory_equal(v[0], v[1], bytes);
    int dirty = op < 7;
    if (dirty) {
      uint32_t seed = fh_rng_u32(&r);
      for (int b = 0; b < 2; b++) {
        fh_rng e;
        fh_rng_init(&e, seed, FH_RNG_TEST, 1, 0);
        for (size_t i = 0; i < bytes; i++) v[b][i] = (unsigned char)(v[b][i] + (fh_rng_u32(&e) & 0x3f));
      }
    }
    for (int b = 0; b < 2; b++) assert_int_equal(fh_client_store_release(s[b], fid[b][k], client, dirty), 0);
  }
  for (int k = 0; k < 4; k++) {
    assert_int_equal(fh_client_store_get_rows(s[0], fid[0][k], 100, NLOCAL, row, init), 0);
    assert_int_equal(fh_client_store_get_rows(s[1], fid[1][k], 100, NLOCAL, row2, init2), 0);
    size_t bytes = lens[k] * fh_state_type_size(types[k]);
    assert_memory_equal(init, init2, NLOCAL);
    assert_memory_equal(row, row2, NLOCAL * bytes);
    int nset = 0;
    for (int i = 0; i < NLOCAL; i++) {
      nset += init[i];
      assert_int_equal(init[i], fh_client_store_initialised(s[1], fid[1][k], 100 + i));
      if (!init[i]) /* rows without a vector read as zeros */
        for (size_t j = 0; j < bytes; j++) assert_int_equal(row[i * bytes + j], 0);
    }
    assert_true(nset > 0 && nset < NLOCAL); /* the sequence exercised both cases */
  }
  free(row);
  free(row2);
  for (int b = 0; b < 2; b++) fh_client_store_free(s[b]);
}

/* get_rows -> put_rows into a new store reproduces every vector and flag. */
static void test_rows_round_trip(void **state) {
  (void)state;
  for (int b = 0; b < 2; b++) {
    fh_client_store *a = make_store(backends[b], 10), *c = make_store(backends[1 - b], 10);
    int fa, fc;
    assert_int_equal(fh_client_store_field(a, "x", FH_STATE_F64, 17, &fa), 0);
    assert_int_equal(fh_client_store_field(c, "x", FH_STATE_F64, 17, &fc), 0);
    for (int k = 100; k < 110; k += 3) {
      double *v = fh_client_store_acquire(a, fa, k, NULL);
      for (int i = 0; i < 17; i++) v[i] = k * 1000 + i;
      assert_int_equal(fh_client_store_release(a, fa, k, 1), 0);
    }
    double rows[10 * 17];
    uint8_t init[10];
    assert_int_equal(fh_client_store_get_rows(a, fa, 100, 10, rows, init), 0);
    for (int i = 0; i < 10; i++) assert_int_equal(init[i], i % 3 == 0);
    assert_int_equal(fh_client_store_put_rows(c, fc, 100, 10, rows, init), 0);
    for (int k = 100; k < 110; k++) {
      int fresh;
      double *v = fh_client_store_acquire(c, fc, k, &fresh);
      assert_int_equal(fresh, (k - 100) % 3 != 0);
      for (int i = 0; i < 17; i++) assert_true(v[i] == (fresh ? 0.0 : k * 1000.0 + i));
      assert_int_equal(fh_client_store_release(c, fc, k, 0), 0);
    }
    fh_client_store_free(a);
    fh_client_store_free(c);
  }
}

/* A client's whole state to another rank's store and back (run.schedule =
 * balanced): pack on the host, install as a guest elsewhere (a store that
 * hosts no client, either backend), change it there, pack the guest, unpack
 * on the host: the host sees the changes, flags included. */
static void test_guest_round_trip(void **state) {
  (void)state;
  for (int b = 0; b < 2; b++) {
    fh_client_store *h = make_store(backends[b], 10), *g = NULL;
    fh_config *cfg = state_config(backends[b], NULL);
    char run_dir[128];
    snprintf(run_dir, sizeof run_dir, "%s/guest", g_dir);
    assert_int_equal(fh_client_store_create(&g, cfg, MPI_COMM_WORLD, 1000, 0, 0, run_dir), 0);
    fh_config_free(cfg);
    int f[2][3];
    fh_client_store *st[2] = {h, g};
    for (int i = 0; i < 2; i++) {
      assert_int_equal(fh_client_store_field(st[i], "a", FH_STATE_F32, 5, &f[i][0]), 0);
      assert_int_equal(fh_client_store_field(st[i], "b", FH_STATE_I32, 3, &f[i][1]), 0);
      assert_int_equal(fh_client_store_field(st[i], "c", FH_STATE_F16, 4, &f[i][2]), 0);
    }
    assert_int_equal(fh_client_store_packed_bytes(h), 3 + 5 * 4 + 3 * 4 + 4 * 2);
    float *va = fh_client_store_acquire(h, f[0][0], 103, NULL);
    for (int i = 0; i < 5; i++) va[i] = 1.5f * i;
    assert_int_equal(fh_client_store_release(h, f[0][0], 103, 1), 0);
    uint16_t *vc = fh_client_store_acquire(h, f[0][2], 103, NULL);
    for (int i = 0; i < 4; i++) vc[i] = fh_f32_to_f16(-0.25f * i);
    assert_int_equal(fh_client_store_release(h, f[0][2], 103, 1), 0);

    char buf[64], back[64];
    assert_int_equal(fh_client_store_pack(h, 103, buf), 0);
    fh_client_store_guest_add(g, 103, buf);
    assert_int_equal(fh_client_store_initialised(g, f[1][0], 103), 1);
    assert_int_equal(fh_client_store_initialised(g, f[1][1], 103), 0);
    int fresh;
    float *ga = fh_client_store_acquire(g, f[1][0], 103, &fresh);
    assert_int_equal(fresh, 0);
    for (int i = 0; i < 5; i++) assert_true(ga[i] == 1.5f * i), ga[i] += 10;
    assert_int_equal(fh_client_store_release(g, f[1][0], 103, 1), 0);
    int32_t *gb = fh_client_store_acquire(g, f[1][1], 103, &fresh);
    assert_int_equal(fresh, 1);
    for (int i = 0; i < 3; i++) assert_int_equal(gb[i], 0), gb[i] = 7 + i;
    assert_int_equal(fh_client_store_release(g, f[1][1], 103, 1), 0);
    fh_client_store_guest_pack(g, 103, back);
    fh_client_store_guests_clear(g);
    assert_int_equal(fh_client_store_unpack(h, 103, back), 0);

    float *ha = fh_client_store_acquire(h, f[0][0], 103, NULL);
    for (int i = 0; i < 5; i++) assert_true(ha[i] == 1.5f * i + 10);
    assert_int_equal(fh_client_store_release(h, f[0][0], 103, 0), 0);
    int32_t *hb = fh_client_store_acquire(h, f[0][1], 103, &fresh);
    assert_int_equal(fresh, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(hb[i], 7 + i);
    assert_int_equal(fh_client_store_release(h, f[0][1], 103, 0), 0);
    uint16_t *hc = fh_client_store_acquire(h, f[0][2], 103, NULL);
    for (int i = 0; i < 4; i++) assert_true(fh_f16_to_f32(hc[i]) == -0.25f * i);
    assert_int_equal(fh_client_store_release(h, f[0][2], 103, 0), 0);
    /* another client stays as it was: no vector */
    assert_int_equal(fh_client_store_initialised(h, f[0][0], 104), 0);
    fh_client_store_free(h);
    fh_client_store_free(g);
  }
}

/* Resident bytes: the memory backend holds a pointer per client and field plus
 * the vectors that exist; the hdf5 backend a flag per client and field plus the
 * held vectors, and its file grows with the vectors written. */
static void test_memory_report(void **state) {
  (void)state;
  fh_client_store *m = make_store("memory", 50), *h = make_store("hdf5", 50);
  int fm, fh;
  assert_int_equal(fh_client_store_field(m, "w", FH_STATE_F32, 10000, &fm), 0);
  assert_int_equal(fh_client_store_field(h, "w", FH_STATE_F32, 10000, &fh), 0);
  assert_int_equal(fh_client_store_bytes(m), 50 * sizeof(void *));
  assert_int_equal(fh_client_store_bytes(h), 50);
  size_t file0 = fh_client_store_file_bytes(h);
  assert_int_equal(fh_client_store_file_bytes(m), 0);
  assert_string_equal(fh_client_store_backend(h), "hdf5");
  for (int k = 100; k < 120; k++) {
    float *v = fh_client_store_acquire(m, fm, k, NULL);
    v[0] = 1;
    assert_int_equal(fh_client_store_release(m, fm, k, 1), 0);
    v = fh_client_store_acquire(h, fh, k, NULL);
    assert_int_equal(fh_client_store_bytes(h), 50 + 40000);
    v[0] = 1;
    assert_int_equal(fh_client_store_release(h, fh, k, 1), 0);
  }
  assert_int_equal(fh_client_store_bytes(m), 50 * sizeof(void *) + 20 * 40000);
  assert_int_equal(fh_client_store_bytes(h), 50);
  assert_true(fh_client_store_file_bytes(h) >= file0 + 20 * 40000);
  fh_client_store_report(m, MPI_COMM_WORLD);
  fh_client_store_report(h, MPI_COMM_WORLD);
  fh_client_store_free(m);
  fh_client_store_free(h);
}

/* state.dir's files of the run name "myrun": how many, and the first's path. */
static int count_myrun_files(const char *dir, char *first, size_t len) {
  glob_t g;
  char pattern[256];
  snprintf(pattern, sizeof pattern, "%s/myrun.*.state.rank0.h5", dir);
  int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
  if (n > 0 && first) snprintf(first, len, "%s", g.gl_pathv[0]);
  if (n > 0) globfree(&g);
  return n;
}

/* The hdf5 backend's file: RUN/state.rank0.h5 by default, state.dir/<run
 * name>.<hash of the run folder's path>.state.rank0.h5 when set (two runs of
 * one name in different folders sharing state.dir get a file each); removed
 * when the store is freed. */
static void test_hdf5_file_place(void **state) {
  (void)state;
  char path[256], dir[128], run_dir[128];
  fh_client_store *s = make_store("hdf5", 3);
  snprintf(path, sizeof path, "%s/run/state.rank0.h5", g_dir);
  assert_int_equal(access(path, F_OK), 0);
  fh_client_store_free(s);
  assert_int_not_equal(access(path, F_OK), 0);

  snprintf(dir, sizeof dir, "%s/scratch/deep", g_dir);
  snprintf(run_dir, sizeof run_dir, "%s/runs/myrun", g_dir);
  fh_config *cfg = state_config("hdf5", dir);
  assert_int_equal(fh_client_store_create(&s, cfg, MPI_COMM_WORLD, 10, 0, 10, run_dir), 0);
  assert_int_equal(count_myrun_files(dir, path, sizeof path), 1);
  assert_int_equal(access(path, F_OK), 0);

  /* another run named myrun, in another folder, at the same time */
  char other_dir[128];
  snprintf(other_dir, sizeof other_dir, "%s/other/myrun", g_dir);
  fh_client_store *o = NULL;
  assert_int_equal(fh_client_store_create(&o, cfg, MPI_COMM_WORLD, 10, 0, 10, other_dir), 0);
  assert_int_equal(count_myrun_files(dir, NULL, 0), 2);
  int fs, fo;
  assert_int_equal(fh_client_store_field(s, "alg.c", FH_STATE_I32, 4, &fs), 0);
  assert_int_equal(fh_client_store_field(o, "alg.c", FH_STATE_I32, 4, &fo), 0);
  int32_t *row = fh_client_store_acquire(s, fs, 5, NULL);
  for (int i = 0; i < 4; i++) row[i] = 100 + i;
  assert_int_equal(fh_client_store_release(s, fs, 5, 1), 0);
  row = fh_client_store_acquire(o, fo, 5, NULL);
  for (int i = 0; i < 4; i++) row[i] = -1;
  assert_int_equal(fh_client_store_release(o, fo, 5, 1), 0);
  int fresh;
  row = fh_client_store_acquire(s, fs, 5, &fresh);
  assert_int_equal(fresh, 0);
  for (int i = 0; i < 4; i++) assert_int_equal(row[i], 100 + i);
  assert_int_equal(fh_client_store_release(s, fs, 5, 0), 0);
  fh_client_store_free(o);
  assert_int_equal(count_myrun_files(dir, NULL, 0), 1);
  assert_int_equal(access(path, F_OK), 0);

  fh_client_store_free(s);
  assert_int_not_equal(access(path, F_OK), 0);
  fh_config_free(cfg);

  /* an unwritable folder is FH_ERR_OUTPUT naming state.dir */
  cfg = state_config("hdf5", "/proc/no/such/dir");
  assert_int_equal(fh_client_store_create(&s, cfg, MPI_COMM_WORLD, 10, 0, 10, run_dir), FH_ERR_OUTPUT);
  assert_non_null(strstr(fh_error_msg(), "state.dir"));
  fh_error_clear();
  fh_client_store_free(s);
  fh_config_free(cfg);
}

/* ---- binary16 ----------------------------------------------------------------- */

static float bits_f(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

static uint16_t gcc_f16(float x) {
  _Float16 h = (_Float16)x;
  uint16_t u;
  memcpy(&u, &h, sizeof u);
  return u;
}

static void test_f16_known_values(void **state) {
  (void)state;
  assert_int_equal(fh_f32_to_f16(0.0f), 0x0000);
  assert_int_equal(fh_f32_to_f16(-0.0f), 0x8000);
  assert_int_equal(fh_f32_to_f16(1.0f), 0x3c00);
  assert_int_equal(fh_f32_to_f16(-2.0f), 0xc000);
  assert_int_equal(fh_f32_to_f16(65504.0f), 0x7bff);      /* largest half         */
  assert_int_equal(fh_f32_to_f16(65519.996f), 0x7bff);    /* below the tie        */
  assert_int_equal(fh_f32_to_f16(65520.0f), 0x7c00);      /* tie -> even = inf    */
  assert_int_equal(fh_f32_to_f16(1e10f), 0x7c00);
  assert_int_equal(fh_f32_to_f16(-INFINITY), 0xfc00);
  assert_true((fh_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (fh_f32_to_f16(NAN) & 0x3ff) != 0);
  /* ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 */
  assert_int_equal(fh_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
  assert_int_equal(fh_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
  assert_int_equal(fh_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
  /* subnormals: 2^-24 is the smallest; 2^-25 ties to 0; just above rounds up */
  assert_int_equal(fh_f32_to_f16(0x1p-24f), 0x0001);
  assert_int_equal(fh_f32_to_f16(0x1p-25f), 0x0000);
  assert_int_equal(fh_f32_to_f16(0x1.000002p-25f), 0x0001);
  assert_int_equal(fh_f32_to_f16(3 * 0x1p-25f), 0x0002);
  assert_int_equal(fh_f32_to_f16(0x1p-14f), 0x0400); /* smallest normal */
  assert_int_equal(fh_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400); /* rounds up into the normals */
  assert_true(fh_f16_to_f32(0x0001) == 0x1p-24f);
  assert_true(fh_f16_to_f32(0x7bff) == 65504.0f);
  assert_true(fh_f16_to_f32(0x3555) == 0x1.554p-2f);
  assert_true(isinf(fh_f16_to_f32(0xfc00)) && fh_f16_to_f32(0xfc00) < 0);
  assert_true(isnan(fh_f16_to_f32(0x7e00)));
}

/* Every half converts to float and back unchanged; every float near every
 * representable half and every tie between two halves converts as GCC's
 * _Float16 does (IEEE round to nearest even), and so does a sweep of all
 * exponents. */
static void test_f16_against_gcc(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 65536; h++) {
    float x = fh_f16_to_f32((uint16_t)h);
    if (isnan(x)) {
      assert_true(isnan(fh_f16_to_f32(fh_f32_to_f16(x))));
      continue;
    }
    _Float16 g;
    uint16_t hh = (uint16_t)h;
    memcpy(&g, &hh, 2);
    assert_true((float)g == x);
    assert_int_equal(fh_f32_to_f16(x), h);
    /* the tie with the next half up, and one float ulp either side of it */
    if ((h & 0x7fff) < 0x7c00) {
      float next = fh_f16_to_f32((uint16_t)(h + 1));
      if (!isnan(next) && !isinf(next)) {
        uint32_t u;
        float mid = (float)(((double)x + (double)next) / 2);
        memcpy(&u, &mid, 4);
        for (int d = -1; d <= 1; d++) {
          float y = bits_f(u + (uint32_t)d);
          assert_int_equal(fh_f32_to_f16(y), gcc_f16(y));
        }
      }
    }
  }
  for (uint64_t u = 0; u < 0x100000000ull; u += 0x3f1d) { /* ~270k floats across all exponents */
    float y = bits_f((uint32_t)u);
    if (isnan(y)) continue;
    assert_int_equal(fh_f32_to_f16(y), gcc_f16(y));
  }
  float x[5] = {1, -0.333333f, 7e-6f, 3e5f, 0}, y[5];
  uint16_t h[5];
  fh_f32_to_f16_array(x, h, 5);
  fh_f16_to_f32_array(h, y, 5);
  for (int i = 0; i < 5; i++) assert_int_equal(h[i], gcc_f16(x[i]));
  assert_true(y[0] == 1 && fabsf(y[1] + 0.333333f) < 2e-4f && isinf(y[3]));
}

static int setup_dir(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/fh_state_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int remove_dir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fresh_zero_and_persistence),
      cmocka_unit_test(test_backends_identical),
      cmocka_unit_test(test_rows_round_trip),
      cmocka_unit_test(test_guest_round_trip),
      cmocka_unit_test(test_memory_report),
      cmocka_unit_test(test_hdf5_file_place),
      cmocka_unit_test(test_f16_known_values),
      cmocka_unit_test(test_f16_against_gcc),
  };
  int rc = cmocka_run_group_tests(tests, setup_dir, remove_dir);
  MPI_Finalize();
  return rc;
}
