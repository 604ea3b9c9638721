/* The file sources on small files written here in the real formats: IDX
 * (plain and gzip, MNIST and EMNIST names), CIFAR-10 / CIFAR-100 binary
 * batches and LEAF JSON folders. Each is read back value for value, and each
 * kind of bad file (wrong magic, truncated, label out of range, ...) stops
 * with FH_ERR_DATA and a message that names the file and the fault. */
#define _GNU_SOURCE /* nftw */
#include <ftw.h>
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
#include <zlib.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/partition.h"
#include "data/source.h"

static const fh_key_spec run_keys[] = {
    {"run.clients", FH_T_INT, "3", 1, 1e9, NULL, "clients"},
    {"run.seed", FH_T_INT, "1", 0, 1e15, NULL, "seed"},
    FH_KEYS_END};

static char g_dir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup_dir(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/fh_src_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int remove_dir(void **state) {
  (void)state;
  return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* g_dir/rel, its folders made on the way. */
static const char *path_of(const char *rel) {
  static char buf[4][512];
  static int at;
  at = (at + 1) % 4;
  snprintf(buf[at], sizeof buf[at], "%s/%s", g_dir, rel);
  for (char *p = buf[at] + strlen(g_dir) + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(buf[at], 0700);
      *p = '/';
    }
  return buf[at];
}

static fh_config *make_cfg(const char *const *sets, int nsets) {
  const fh_key_spec *const tables[] = {run_keys, fh_data_keys, fh_partition_keys, fh_augment_keys};
  fh_config *cfg = NULL;
  fh_error_clear();
  if (fh_config_load(&cfg, NULL, sets, nsets, tables, (int)(sizeof tables / sizeof tables[0])) != 0) fail_msg("config: %s", fh_error_msg());
  return cfg;
}

/* Opens data.source = source on folder rel (relative to g_dir), with extra
 * sets; fails the test on an error. */
static fh_source *open_source(const char *source, const char *rel, const char *extra) {
  char s1[64], s2[600];
  snprintf(s1, sizeof s1, "data.source=%s", source);
  snprintf(s2, sizeof s2, "data.path=%s", path_of(rel));
  const char *sets[3] = {s1, s2, extra};
  fh_config *cfg = make_cfg(sets, extra ? 3 : 2);
  fh_source *src = NULL;
  fh_error_clear();
  if (fh_source_open(&src, cfg) != 0) fail_msg("open %s: %s", rel, fh_error_msg());
  fh_config_free(cfg);
  return src;
}

/* The same, expecting code and a message containing each of the strings. */
static void expect_error(const char *source, const char *rel, const char *extra, int code, const char *a,
                         const char *b) {
  char s1[64], s2[600];
  snprintf(s1, sizeof s1, "data.source=%s", source);
  snprintf(s2, sizeof s2, "data.path=%s", rel ? path_of(rel) : "");
  const char *sets[3] = {s1, s2, extra};
  fh_config *cfg = make_cfg(sets, extra ? 3 : 2);
  fh_source *src = (fh_source *)1;
  fh_error_clear();
  int rc = fh_source_open(&src, cfg);
  if (rc != code || !strstr(fh_error_msg(), a) || (b && !strstr(fh_error_msg(), b)))
    fail_msg("%s: got code %d '%s'; expected %d with '%s' and '%s'", rel ? rel : "(none)", rc, fh_error_msg(), code,
             a, b ? b : "");
  assert_null(src);
  fh_config_free(cfg);
}

static float *read_all(fh_source *src, int split) {
  int64_t n = src->n[split];
  int64_t *rows = malloc(sizeof(int64_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) rows[i] = i;
  float *x = malloc(sizeof(float) * (size_t)n * (size_t)src->dim);
  fh_error_clear();
  if (src->read_rows(src, split, rows, n, x) != 0) fail_msg("read: %s", fh_error_msg());
  free(rows);
  return x;
}

/* ---- IDX ------------------------------------------------------------------------ */

/* Pixel (i, j) of row r of split s (as the file stores it) and its label. */
static unsigned char idx_pixel(int s, int r, int i, int j) { return (unsigned char)((r * 7 + i * 3 + j + s * 50) % 256); }
static int idx_label(int s, int r, int classes, int first) { return (r * 3 + s) % classes + first; }

static void put_be32(unsigned char *b, uint32_t v) {
  b[0] = (unsigned char)(v >> 24);
  b[1] = (unsigned char)(v >> 16);
  b[2] = (unsigned char)(v >> 8);
  b[3] = (unsigned char)v;
}

/* Writes bytes to rel, gzip-compressed when gz. */
static void write_bytes(const char *rel, int gz, const unsigned char *data, size_t len) {
  if (gz) {
    gzFile f = gzopen(path_of(rel), "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
    gzclose(f);
  } else {
    FILE *f = fopen(path_of(rel), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
  }
}

/* An IDX pair of one split: images [n, h, w] and labels [n]. */
static void write_idx_split(const char *dir, const char *prefix, const char *part, int s, int n, int h, int w,
                            int classes, int first, int gz) {
  char rel[256];
  size_t len = 16 + (size_t)n * h * w;
  unsigned char *b = malloc(len);
  put_be32(b, 0x803);
  put_be32(b + 4, (uint32_t)n);
  put_be32(b + 8, (uint32_t)h);
  put_be32(b + 12, (uint32_t)w);
  for (int r = 0; r < n; r++)
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++) b[16 + ((size_t)r * h + i) * w + j] = idx_pixel(s, r, i, j);
  snprintf(rel, sizeof rel, "%s/%s%s-images-idx3-ubyte%s", dir, prefix, part, gz ? ".gz" : "");
  write_bytes(rel, gz, b, len);
  free(b);
  b = malloc(8 + (size_t)n);
  put_be32(b, 0x801);
  put_be32(b + 4, (uint32_t)n);
  for (int r = 0; r < n; r++) b[8 + r] = (unsigned char)idx_label(s, r, classes, first);
  snprintf(rel, sizeof rel, "%s/%s%s-labels-idx1-ubyte%s", dir, prefix, part, gz ? ".gz" : "");
  write_bytes(rel, gz, b, 8 + (size_t)n);
  free(b);
}

static void write_mnist(const char *dir, int gz) {
  write_idx_split(dir, "", "train", 0, 30, 5, 4, 10, 0, gz);
  write_idx_split(dir, "", "t10k", 1, 12, 5, 4, 10, 0, gz);
}

static void check_mnist(fh_source *src, const char *name) {
  assert_string_equal(src->name, name);
  assert_int_equal(src->num_classes, 10);
  assert_int_equal(src->c, 1);
  assert_int_equal(src->h, 5);
  assert_int_equal(src->w, 4);
  assert_int_equal(src->dim, 20);
  assert_true(src->value_scale == 255.0f);
  assert_true(src->mean[0] == 0.1307f && src->std[0] == 0.3081f);
  assert_null(src->offsets[0]);
  assert_int_equal(src->natural_clients, 0);
  const int n[2] = {30, 12};
  for (int s = 0; s < 2; s++) {
    assert_int_equal(src->n[s], n[s]);
    float *x = read_all(src, s);
    for (int r = 0; r < n[s]; r++) {
      assert_int_equal(src->labels[s][r], idx_label(s, r, 10, 0));
      for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) assert_true(x[(size_t)r * 20 + i * 4 + j] == (float)idx_pixel(s, r, i, j));
    }
    free(x);
  }
  /* scattered rows with a repeat, in one call */
  const int64_t rows[5] = {1, 2, 2, 17, 29};
  float x[5 * 20];
  assert_int_equal(src->read_rows(src, 0, rows, 5, x), 0);
  for (int t = 0; t < 5; t++) assert_true(x[t * 20 + 7] == (float)idx_pixel(0, (int)rows[t], 1, 3));
}

static void test_idx_plain_and_gzip(void **state) {
  (void)state;
  write_mnist("mnist", 0);
  fh_source *src = open_source("idx", "mnist", NULL);
  check_mnist(src, "mnist");
  fh_source_close(src);
  write_mnist("mnist-gz", 1);
  src = open_source("idx", "mnist-gz/", NULL);
  check_mnist(src, "mnist-gz");
  /* reading backwards restarts the gzip stream */
  const int64_t late[1] = {25}, early[1] = {3};
  float a[20], b[20];
  assert_int_equal(src->read_rows(src, 0, late, 1, a), 0);
  assert_int_equal(src->read_rows(src, 0, early, 1, b), 0);
  assert_true(a[0] == (float)idx_pixel(0, 25, 0, 0) && b[0] == (float)idx_pixel(0, 3, 0, 0));
  fh_source_close(src);
}

/* EMNIST letters: labels 1..26 become 0..25, and images are transposed back:
 * the file's [d1, d2] image is shown as its d2 x d1 transpose. */
static void test_idx_emnist(void **state) {
  (void)state;
  write_idx_split("emnist", "emnist-letters-", "train", 0, 40, 5, 4, 26, 1, 1);
  write_idx_split("emnist", "emnist-letters-", "test", 1, 9, 5, 4, 26, 1, 0);
  fh_source *src = open_source("idx", "emnist", "data.emnist_split=letters");
  assert_string_equal(src->name, "emnist-letters");
  assert_int_equal(src->num_classes, 26);
  assert_int_equal(src->h, 4);
  assert_int_equal(src->w, 5);
  for (int s = 0; s < 2; s++) {
    float *x = read_all(src, s);
    for (int r = 0; r < src->n[s]; r++) {
      assert_int_equal(src->labels[s][r], idx_label(s, r, 26, 1) - 1);
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++) assert_true(x[(size_t)r * 20 + i * 5 + j] == (float)idx_pixel(s, r, j, i));
    }
    free(x);
  }
  fh_source_close(src);
}

static void test_idx_errors(void **state) {
  (void)state;
  expect_error("idx", NULL, NULL, FH_ERR_CONFIG, "data.path is empty", NULL);
  expect_error("idx", "nowhere", NULL, FH_ERR_DATA, "nowhere': no such folder", NULL);
  write_mnist("bad_missing", 0);
  remove(path_of("bad_missing/t10k-labels-idx1-ubyte"));
  expect_error("idx", "bad_missing", NULL, FH_ERR_DATA, "no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz",
               NULL);
  expect_error("idx", "bad_missing/train-images-idx3-ubyte", NULL, FH_ERR_DATA, "is a file", NULL);

  /* labels where the images should be: wrong magic */
  write_mnist("bad_magic", 0);
  unsigned char junk[32] = {0, 0, 8, 1};
  write_bytes("bad_magic/train-images-idx3-ubyte", 0, junk, sizeof junk);
  expect_error("idx", "bad_magic", NULL, FH_ERR_DATA, "bad_magic/train-images-idx3-ubyte: magic number 0x00000801, expected 0x00000803",
               NULL);

  /* a truncated plain file, a truncated gzip file */
  write_mnist("bad_trunc", 0);
  assert_int_equal(truncate(path_of("bad_trunc/t10k-images-idx3-ubyte"), 16 + 12 * 20 - 5), 0);
  expect_error("idx", "bad_trunc", NULL, FH_ERR_DATA, "t10k-images-idx3-ubyte: 251 bytes, expected 256",
               "the file is truncated");
  write_mnist("bad_gz", 1);
  struct stat st;
  stat(path_of("bad_gz/train-images-idx3-ubyte.gz"), &st);
  assert_int_equal(truncate(path_of("bad_gz/train-images-idx3-ubyte.gz"), st.st_size - 30), 0);
  expect_error("idx", "bad_gz", NULL, FH_ERR_DATA, "train-images-idx3-ubyte.gz: the gzip trailer gives",
               "truncated or damaged");

  /* a label of 10 in a 10-class set; more labels than images */
  write_mnist("bad_label", 0);
  unsigned char lab[8 + 12];
  put_be32(lab, 0x801);
  put_be32(lab + 4, 12);
  for (int r = 0; r < 12; r++) lab[8 + r] = (unsigned char)(r == 5 ? 10 : 1);
  write_bytes("bad_label/t10k-labels-idx1-ubyte", 0, lab, sizeof lab);
  expect_error("idx", "bad_label", NULL, FH_ERR_DATA, "t10k-labels-idx1-ubyte: label 5 is 10, outside 0..9", NULL);
  put_be32(lab + 4, 11);
  write_bytes("bad_label/t10k-labels-idx1-ubyte", 0, lab, 8 + 11);
  expect_error("idx", "bad_label", NULL, FH_ERR_DATA, "t10k-labels-idx1-ubyte has 11 labels but t10k-images-idx3-ubyte has 12",
               NULL);
}

/* ---- CIFAR ------------------------------------------------------------------------ */

static unsigned char cifar_pixel(int s, int r, int k) { return (unsigned char)((r * 11 + k * 5 + s * 77) % 256); }

/* rows [r0, r0+n) of split s into one batch file: labels per record. */
static void write_cifar_file(const char *rel, int s, int r0, int n, int label_bytes) {
  size_t rec = (size_t)label_bytes + 3072;
  unsigned char *b = malloc(rec * (size_t)n);
  for (int t = 0; t < n; t++) {
    int r = r0 + t;
    unsigned char *p = b + rec * (size_t)t;
    if (label_bytes == 1) {
      p[0] = (unsigned char)((r * 3 + s) % 10);
    } else {
      p[0] = (unsigned char)((r * 3 + s) % 20);
      p[1] = (unsigned char)((r * 7 + s) % 100);
    }
    for (int k = 0; k < 3072; k++) p[label_bytes + k] = cifar_pixel(s, r, k);
  }
  write_bytes(rel, 0, b, rec * (size_t)n);
  free(b);
}

static void write_cifar10(const char *dir) {
  char rel[128];
  for (int i = 0; i < 5; i++) {
    snprintf(rel, sizeof rel, "%s/data_batch_%d.bin", dir, i + 1);
    write_cifar_file(rel, 0, 4 * i, 4, 1);
  }
  snprintf(rel, sizeof rel, "%s/test_batch.bin", dir);
  write_cifar_file(rel, 1, 0, 6, 1);
}

static void test_cifar(void **state) {
  (void)state;
  write_cifar10("cifar-10-batches-bin");
  fh_source *src = open_source("cifar10", "cifar-10-batches-bin", NULL);
  assert_string_equal(src->name, "cifar10");
  assert_int_equal(src->num_classes, 10);
  assert_int_equal(src->c, 3);
  assert_int_equal(src->h, 32);
  assert_int_equal(src->dim, 3072);
  assert_true(src->mean[2] == 0.4465f && src->std[1] == 0.2435f);
  const int n[2] = {20, 6};
  for (int s = 0; s < 2; s++) {
    assert_int_equal(src->n[s], n[s]);
    float *x = read_all(src, s);
    for (int r = 0; r < n[s]; r++) {
      assert_int_equal(src->labels[s][r], (r * 3 + s) % 10);
      for (int k = 0; k < 3072; k += 97) assert_true(x[(size_t)r * 3072 + k] == (float)cifar_pixel(s, r, k));
    }
    free(x);
  }
  /* rows across batch boundaries in one call */
  const int64_t rows[4] = {3, 4, 4, 19};
  float *x = malloc(sizeof(float) * 4 * 3072);
  assert_int_equal(src->read_rows(src, 0, rows, 4, x), 0);
  for (int t = 0; t < 4; t++) assert_true(x[(size_t)t * 3072 + 3071] == (float)cifar_pixel(0, (int)rows[t], 3071));
  free(x);
  fh_source_close(src);

  write_cifar_file("cifar-100-binary/train.bin", 0, 0, 25, 2);
  write_cifar_file("cifar-100-binary/test.bin", 1, 0, 7, 2);
  src = open_source("cifar100", "cifar-100-binary", NULL);
  assert_string_equal(src->name, "cifar100");
  assert_int_equal(src->num_classes, 100);
  assert_true(src->mean[0] == 0.5071f && src->std[2] == 0.2762f);
  for (int r = 0; r < 25; r++) assert_int_equal(src->labels[0][r], (r * 7) % 100);
  float *xt = read_all(src, 1);
  for (int r = 0; r < 7; r++) assert_true(xt[(size_t)r * 3072] == (float)cifar_pixel(1, r, 0));
  free(xt);
  fh_source_close(src);
  src = open_source("cifar100", "cifar-100-binary", "data.cifar100_labels=coarse");
  assert_int_equal(src->num_classes, 20);
  for (int r = 0; r < 7; r++) assert_int_equal(src->labels[1][r], (r * 3 + 1) % 20);
  fh_source_close(src);
}

static void test_cifar_errors(void **state) {
  (void)state;
  write_cifar10("c10_missing");
  remove(path_of("c10_missing/data_batch_4.bin"));
  expect_error("cifar10", "c10_missing", NULL, FH_ERR_DATA, "no data_batch_4.bin", NULL);

  write_cifar10("c10_trunc");
  assert_int_equal(truncate(path_of("c10_trunc/data_batch_2.bin"), 4 * 3073 - 100), 0);
  expect_error("cifar10", "c10_trunc", NULL, FH_ERR_DATA,
               "data_batch_2.bin: 12192 bytes is not a whole number of 3073-byte records", "truncated");

  write_cifar10("c10_label");
  unsigned char ten = 10;
  FILE *f = fopen(path_of("c10_label/test_batch.bin"), "r+b");
  fseek(f, 3 * 3073, SEEK_SET);
  fwrite(&ten, 1, 1, f);
  fclose(f);
  expect_error("cifar10", "c10_label", NULL, FH_ERR_DATA, "test_batch.bin: record 3 has its label 10, outside 0..9",
               NULL);

  /* CIFAR-10 batches read as CIFAR-100: 3073-byte records are not 3074-byte ones */
  write_cifar_file("c100_bad/train.bin", 0, 0, 3, 1);
  write_cifar_file("c100_bad/test.bin", 1, 0, 3, 2);
  expect_error("cifar100", "c100_bad", NULL, FH_ERR_DATA, "train.bin: 9219 bytes is not a whole number of 3074-byte",
               NULL);
  write_cifar_file("c100_fine/train.bin", 0, 0, 3, 2);
  write_cifar_file("c100_fine/test.bin", 1, 0, 3, 2);
  unsigned char hundred = 100;
  f = fopen(path_of("c100_fine/train.bin"), "r+b");
  fseek(f, 2 * 3074 + 1, SEEK_SET);
  fwrite(&hundred, 1, 1, f);
  fclose(f);
  expect_error("cifar100", "c100_fine", NULL, FH_ERR_DATA, "train.bin: record 2 has fine label 100, outside 0..99",
               NULL);
}

/* ---- LEAF ------------------------------------------------------------------------ */

/* Feature f of sample j of user u in split s, exact in float and in JSON. */
static double leaf_feature(int s, int u, int j, int f) { return s * 0.5 + u * 0.25 + j * 0.125 + f / 1024.0; }
static int leaf_label(int s, int u, int j) { return (u * 5 + j * 3 + s) % 7; }

/* One LEAF file with users ids[0..n) having counts[i] samples of dim features. */
static void write_leaf_file(const char *rel, int s, const int *ids, const int *counts, int n, int dim) {
  FILE *f = fopen(path_of(rel), "w");
  assert_non_null(f);
  fprintf(f, "{\"users\": [");
  for (int i = 0; i < n; i++) fprintf(f, "%s\"f%04d_%02d\"", i ? ", " : "", ids[i], ids[i] % 97);
  fprintf(f, "], \"num_samples\": [");
  for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", counts[i]);
  fprintf(f, "], \"user_data\": {");
  for (int i = 0; i < n; i++) {
    fprintf(f, "%s\"f%04d_%02d\": {\"x\": [", i ? ", " : "", ids[i], ids[i] % 97);
    for (int j = 0; j < counts[i]; j++) {
      fprintf(f, "%s[", j ? ", " : "");
      for (int d = 0; d < dim; d++) fprintf(f, "%s%.10g", d ? ", " : "", leaf_feature(s, ids[i], j, d));
      fprintf(f, "]");
    }
    fprintf(f, "], \"y\": [");
    for (int j = 0; j < counts[i]; j++) fprintf(f, "%s%d", j ? ", " : "", leaf_label(s, ids[i], j));
    fprintf(f, "]}");
  }
  fprintf(f, "}}\n");
  fclose(f);
}

/* Users 3, 1 in train/a.json and 7, 2 in train/b.json; test has 2, 3 (in
 * b.json) and 7 (in a.json); user 1 has no test samples. */
static void write_leaf(const char *dir, int dim) {
  char rel[128];
  const int a_ids[2] = {3, 1}, a_n[2] = {4, 2}, b_ids[2] = {7, 2}, b_n[2] = {3, 5};
  snprintf(rel, sizeof rel, "%s/train/a.json", dir);
  write_leaf_file(rel, 0, a_ids, a_n, 2, dim);
  snprintf(rel, sizeof rel, "%s/train/b.json", dir);
  write_leaf_file(rel, 0, b_ids, b_n, 2, dim);
  const int ta_ids[1] = {7}, ta_n[1] = {2}, tb_ids[2] = {2, 3}, tb_n[2] = {1, 2};
  snprintf(rel, sizeof rel, "%s/test/a.json", dir);
  write_leaf_file(rel, 1, ta_ids, ta_n, 1, dim);
  snprintf(rel, sizeof rel, "%s/test/b.json", dir);
  write_leaf_file(rel, 1, tb_ids, tb_n, 2, dim);
}

static void test_leaf(void **state) {
  (void)state;
  write_leaf("leaf/data/synth/data", 6);
  fh_source *src = open_source("leaf", "leaf/data/synth/data", NULL);
  assert_string_equal(src->name, "synth");
  assert_int_equal(src->natural_clients, 4);
  assert_int_equal(src->num_classes, 7); /* the largest label + 1 */
  assert_int_equal(src->dim, 6);
  assert_int_equal(src->c, 6); /* flat */
  /* clients in train order: users 3, 1, 7, 2 */
  const int users[4] = {3, 1, 7, 2}, ntrain[4] = {4, 2, 3, 5}, ntest[4] = {2, 0, 2, 1};
  const int *counts[2] = {ntrain, ntest};
  for (int s = 0; s < 2; s++) {
    assert_non_null(src->offsets[s]);
    float *x = read_all(src, s);
    int64_t row = 0;
    for (int k = 0; k < 4; k++) {
      assert_int_equal(src->offsets[s][k], row);
      for (int j = 0; j < counts[s][k]; j++, row++) {
        assert_int_equal(src->labels[s][row], leaf_label(s, users[k], j));
        for (int f = 0; f < 6; f++) assert_true(x[(size_t)row * 6 + f] == (float)leaf_feature(s, users[k], j, f));
      }
    }
    assert_int_equal(src->offsets[s][4], row);
    assert_int_equal(src->n[s], row);
    free(x);
  }
  fh_source_close(src);

  /* FEMNIST's 784 features are 1x28x28 images of 62 classes */
  write_leaf("femnist/data", 784);
  src = open_source("leaf", "femnist/data", NULL);
  assert_string_equal(src->name, "femnist");
  assert_int_equal(src->c, 1);
  assert_int_equal(src->h, 28);
  assert_int_equal(src->num_classes, 62);
  const int64_t rows[2] = {4, 9};
  float *x = malloc(sizeof(float) * 2 * 784);
  assert_int_equal(src->read_rows(src, 0, rows, 2, x), 0);
  assert_true(x[783] == (float)leaf_feature(0, 1, 0, 783)); /* row 4: user 1, sample 0 */
  assert_true(x[784 + 5] == (float)leaf_feature(0, 2, 0, 5)); /* row 9: user 2, sample 0 */
  free(x);
  fh_source_close(src);
}

/* LEAF users are the clients: client k holds user k's samples, normalised by
 * data.mean / data.std; run.clients must match the users. */
static void test_dataset_from_leaf(void **state) {
  (void)state;
  write_leaf("leaf-ds", 6);
  const int one[1] = {1}, two[1] = {2};
  write_leaf_file("leaf-ds/test/c.json", 1, one, two, 1, 6); /* every client needs test rows */
  char path[600];
  snprintf(path, sizeof path, "data.path=%s", path_of("leaf-ds"));
  const char *sets[] = {"data.source=leaf", path, "run.clients=4", "data.mean=0.5", "data.std=2"};
  fh_config *cfg = make_cfg(sets, 5);
  fh_dataset *ds = NULL;
  fh_error_clear();
  if (fh_dataset_load(&ds, cfg, 1, 3, 0, 1) != 0) fail_msg("%s", fh_error_msg());
  const int users[4] = {3, 1, 7, 2}, ntrain[4] = {4, 2, 3, 5}, ntest[4] = {2, 2, 2, 1};
  for (int i = 0; i < 3; i++) {
    const int k = 1 + i;
    assert_int_equal(ds->clients[i].train.n, ntrain[k]);
    assert_int_equal(ds->clients[i].test.n, ntest[k]);
    for (int j = 0; j < ntrain[k]; j++) {
      assert_int_equal(ds->clients[i].train.y[j], leaf_label(0, users[k], j));
      assert_true(ds->clients[i].train.x[j * 6 + 2] == ((float)leaf_feature(0, users[k], j, 2) - 0.5f) / 2.0f);
    }
    for (int j = 0; j < ntest[k]; j++) assert_int_equal(ds->clients[i].test.y[j], leaf_label(1, users[k], j));
  }
  assert_int_equal(ds->global_test.n, 7);
  fh_dataset_free(ds);
  fh_config_free(cfg);

  sets[2] = "run.clients=3";
  cfg = make_cfg(sets, 5);
  fh_error_clear();
  ds = (fh_dataset *)1;
  assert_int_equal(fh_dataset_load(&ds, cfg, 0, 3, 0, 1), FH_ERR_DATA);
  if (!strstr(fh_error_msg(), "leaf-ds: the data has 4 clients (the users of train/*.json) but the deck asks for 3 "
                              "(run.clients); set run.clients = 4"))
    fail_msg("%s", fh_error_msg());
  fh_config_free(cfg);
}

static void write_text(const char *rel, const char *text) {
  FILE *f = fopen(path_of(rel), "w");
  fputs(text, f);
  fclose(f);
}

static void test_leaf_errors(void **state) {
  (void)state;
  write_leaf("leaf_notest", 6);
  remove(path_of("leaf_notest/test/a.json"));
  remove(path_of("leaf_notest/test/b.json"));
  expect_error("leaf", "leaf_notest", NULL, FH_ERR_DATA, "leaf_notest/test: no .json files", NULL);

  write_leaf("leaf_json", 6);
  write_text("leaf_json/train/b.json", "{\"users\": [\"a\"], ");
  expect_error("leaf", "leaf_json", NULL, FH_ERR_DATA, "leaf_json/train/b.json: line", "not a JSON file");

  write_leaf("leaf_layout", 6);
  write_text("leaf_layout/test/a.json", "{\"users\": [\"f0007_07\"], \"num_samples\": [1]}");
  expect_error("leaf", "leaf_layout", NULL, FH_ERR_DATA, "leaf_layout/test/a.json: needs \"users\" (array) and \"user_data\"",
               NULL);

  write_leaf("leaf_xy", 6);
  write_text("leaf_xy/test/a.json",
             "{\"users\": [\"f0007_07\"], \"num_samples\": [2], \"user_data\": {\"f0007_07\": "
             "{\"x\": [[1,2,3,4,5,6], [1,2,3,4,5,6]], \"y\": [1]}}}");
  expect_error("leaf", "leaf_xy", NULL, FH_ERR_DATA, "user f0007_07 has 2 samples in \"x\" but 1 labels in \"y\"", NULL);

  write_leaf("leaf_dim", 6);
  write_text("leaf_dim/test/a.json",
             "{\"users\": [\"f0007_07\"], \"num_samples\": [1], \"user_data\": {\"f0007_07\": "
             "{\"x\": [[1,2,3]], \"y\": [1]}}}");
  expect_error("leaf", "leaf_dim", NULL, FH_ERR_DATA, "sample 0 of user f0007_07 has 3 features, but the first sample has 6",
               NULL);

  write_leaf("leaf_text", 6);
  write_text("leaf_text/train/a.json",
             "{\"users\": [\"u\"], \"num_samples\": [1], \"user_data\": {\"u\": {\"x\": [\"to be or not\"], \"y\": [1]}}}");
  expect_error("leaf", "leaf_text", NULL, FH_ERR_DATA, "sample 0 of user u is not an array of numbers", NULL);
  write_text("leaf_text/train/a.json",
             "{\"users\": [\"u\"], \"num_samples\": [1], \"user_data\": {\"u\": {\"x\": [[1]], \"y\": [\"t\"]}}}");
  expect_error("leaf", "leaf_text", NULL, FH_ERR_DATA, "label 0 of user u is not a class number", NULL);

  /* LEAF's user split: a test user with no train samples */
  write_leaf("leaf_users", 6);
  const int ids[1] = {42}, n[1] = {2};
  write_leaf_file("leaf_users/test/c.json", 1, ids, n, 1, 6);
  expect_error("leaf", "leaf_users", NULL, FH_ERR_DATA, "leaf_users/test/c.json: user f0042_42 has test samples but no train samples",
               "-t sample");

  write_leaf("leaf_classes", 6);
  expect_error("leaf", "leaf_classes", "data.leaf_classes=5", FH_ERR_DATA, "leaf_classes/train/a.json: user f0001_01, sample 0: label 5 is outside [0, 5)",
               NULL);
}

/* ---- the dataset on a pool ------------------------------------------------------- */

/* Every client's rows hold normalised pool rows with their labels; the
 * concatenated global test blocks of 3 ranks are the normalised test pool. */
static void test_dataset_from_idx(void **state) {
  (void)state;
  write_mnist("mnist-ds", 1);
  char path[600];
  snprintf(path, sizeof path, "data.path=%s", path_of("mnist-ds"));
  const char *sets[] = {"data.source=idx", path, "run.clients=4", "data.mean=0.5", "data.std=0.25"};
  fh_config *cfg = make_cfg(sets, 5);
  fh_source *src = NULL;
  assert_int_equal(fh_source_open(&src, cfg), 0);
  float *pool[2] = {read_all(src, 0), read_all(src, 1)};

  int tn[4], sn[4];
  assert_int_equal(fh_dataset_client_sizes(cfg, tn, sn), 0);
  fh_dataset *all = NULL;
  assert_int_equal(fh_dataset_load(&all, cfg, 0, 4, 0, 1), 0);
  assert_string_equal(all->name, "mnist-ds");
  assert_int_equal(all->dim, 20);
  assert_true(all->mean[0] == 0.5f && all->std[0] == 0.25f && all->value_scale == 255.0f);
  for (int k = 0; k < 4; k++) {
    assert_int_equal(all->clients[k].train.n, tn[k]);
    assert_int_equal(all->clients[k].test.n, sn[k]);
    for (int s = 0; s < 2; s++) {
      const fh_split *sp = s ? &all->clients[k].test : &all->clients[k].train;
      assert_true(sp->n > 0);
      for (int i = 0; i < sp->n; i++) {
        /* find the pool row with these normalised pixels */
        int found = -1;
        for (int r = 0; r < src->n[s] && found < 0; r++) {
          int same = 1;
          for (int f = 0; f < 20 && same; f++)
            same = sp->x[(size_t)i * 20 + f] == (pool[s][(size_t)r * 20 + f] / 255.0f - 0.5f) / 0.25f;
          if (same) found = r;
        }
        assert_true(found >= 0);
        assert_int_equal(sp->y[i], src->labels[s][found]);
      }
    }
  }
  /* a rank hosting clients 2..3 holds exactly their rows */
  fh_dataset *part = NULL;
  assert_int_equal(fh_dataset_load(&part, cfg, 2, 2, 1, 2), 0);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(part->clients[i].train.n, all->clients[2 + i].train.n);
    assert_memory_equal(part->clients[i].train.x, all->clients[2 + i].train.x,
                        sizeof(float) * 20 * (size_t)part->clients[i].train.n);
    assert_memory_equal(part->clients[i].test.y, all->clients[2 + i].test.y,
                        sizeof(int32_t) * (size_t)part->clients[i].test.n);
  }
  fh_dataset_free(part);
  /* global test: 3 ranks' blocks in rank order are the whole test pool */
  assert_int_equal(all->global_test.n, 12);
  int row = 0;
  for (int rank = 0; rank < 3; rank++) {
    fh_dataset *ds = NULL;
    assert_int_equal(fh_dataset_load(&ds, cfg, 0, 0, rank, 3), 0);
    assert_int_equal(ds->global_test.n, 4);
    for (int i = 0; i < ds->global_test.n; i++, row++) {
      assert_int_equal(ds->global_test.y[i], src->labels[1][row]);
      for (int f = 0; f < 20; f++)
        assert_true(ds->global_test.x[(size_t)i * 20 + f] == (pool[1][(size_t)row * 20 + f] / 255.0f - 0.5f) / 0.25f);
    }
    fh_dataset_free(ds);
  }
  fh_dataset_free(all);
  free(pool[0]);
  free(pool[1]);
  fh_source_close(src);
  fh_config_free(cfg);
}

static void test_norm_keys(void **state) {
  (void)state;
  write_cifar10("c10_norm");
  char path[600];
  snprintf(path, sizeof path, "data.path=%s", path_of("c10_norm"));
  const char *sets[] = {"data.source=cifar10", path, "run.clients=2", "data.mean=0.1, 0.2,0.3", "data.std=2"};
  fh_config *cfg = make_cfg(sets, 5);
  fh_dataset *ds = NULL;
  assert_int_equal(fh_dataset_load(&ds, cfg, 0, 2, 0, 1), 0);
  assert_true(ds->mean[1] == 0.2f && ds->std[2] == 2.0f);
  fh_dataset_free(ds);
  fh_config_free(cfg);
  /* the dataset's defaults when the keys are empty */
  const char *dflt[] = {"data.source=cifar10", path, "run.clients=2"};
  cfg = make_cfg(dflt, 3);
  assert_int_equal(fh_dataset_load(&ds, cfg, 0, 1, 0, 1), 0);
  assert_true(ds->mean[0] == 0.4914f && ds->std[2] == 0.2616f);
  fh_dataset_free(ds);
  fh_config_free(cfg);

  /* data.normalise = false: ToTensor only, x = pixel / 255 in [0, 1] */
  const char *raw[] = {"data.source=cifar10", path, "run.clients=2", "data.normalise=false"};
  cfg = make_cfg(raw, 4);
  fh_source *src = NULL;
  assert_int_equal(fh_source_open(&src, cfg), 0);
  float *pool = read_all(src, 0);
  assert_int_equal(fh_dataset_load(&ds, cfg, 0, 1, 0, 1), 0);
  assert_true(ds->mean[0] == 0.0f && ds->std[2] == 1.0f);
  const fh_split *sp = &ds->clients[0].train;
  assert_true(sp->n > 0);
  int in_pool = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < sp->n; i++) {
    const float *x = sp->x + (size_t)i * ds->dim;
    for (int f = 0; f < ds->dim; f++) {
      lo = x[f] < lo ? x[f] : lo;
      hi = x[f] > hi ? x[f] : hi;
    }
    for (int r = 0; r < src->n[0]; r++) {
      int same = 1;
      for (int f = 0; f < ds->dim && same; f++) same = x[f] == pool[(size_t)r * ds->dim + f] / 255.0f;
      if (same) {
        in_pool++;
        break;
      }
    }
  }
  assert_int_equal(in_pool, sp->n); /* every row is a pool row / 255 */
  assert_true(lo >= 0.0f && hi <= 1.0f && hi > lo);
  free(pool);
  fh_source_close(src);
  fh_dataset_free(ds);
  fh_config_free(cfg);
  const char *clash[] = {"data.source=cifar10", path, "run.clients=2", "data.normalise=false", "data.std=2"};
  cfg = make_cfg(clash, 5);
  fh_error_clear();
  assert_int_equal(fh_dataset_load(&ds, cfg, 0, 1, 0, 1), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "data.normalise = false"));
  assert_non_null(strstr(fh_error_msg(), "data.std = '2'"));
  fh_config_free(cfg);

  const char *bad[][2] = {{"data.mean=0.1,0.2", "has 2 values; give 1 (every channel) or 3"},
                          {"data.std=0,1,1", "channel 0 has std 0"},
                          {"data.mean=abc", "data.mean = 'abc': expected 1 or 3 comma-separated numbers"},
                          {"data.mean=1,2,3,4", "has more values than the 3 channels"}};
  for (int i = 0; i < 4; i++) {
    const char *s[] = {"data.source=cifar10", path, "run.clients=2", bad[i][0]};
    cfg = make_cfg(s, 4);
    fh_error_clear();
    ds = (fh_dataset *)1;
    assert_int_equal(fh_dataset_load(&ds, cfg, 0, 1, 0, 1), FH_ERR_CONFIG);
    if (!strstr(fh_error_msg(), bad[i][1])) fail_msg("%s: '%s'", bad[i][0], fh_error_msg());
    assert_null(ds);
    fh_config_free(cfg);
  }
}

/* data.source = fmnist with no data.path reads Debian's dataset-fashion-mnist
 * (scripts/install-deps.sh installs it); skipped where it is not installed. */
static void test_fmnist_debian(void **state) {
  (void)state;
  struct stat st;
  if (stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) != 0) {
    fprintf(stderr, "dataset-fashion-mnist is not installed: skipped\n");
    skip();
  }
  const char *sets[1] = {"data.source=fmnist"};
  fh_config *cfg = make_cfg(sets, 1);
  fh_source *src = NULL;
  fh_error_clear();
  if (fh_source_open(&src, cfg) != 0) fail_msg("fmnist: %s", fh_error_msg());
  assert_int_equal(src->n[0], 60000);
  assert_int_equal(src->n[1], 10000);
  assert_int_equal(src->c, 1);
  assert_int_equal(src->h, 28);
  assert_int_equal(src->w, 28);
  assert_int_equal(src->num_classes, 10);
  assert_string_equal(src->name, "fashion-mnist");
  assert_true(fabsf(src->mean[0] - 0.2860f) < 1e-6f && fabsf(src->std[0] - 0.3530f) < 1e-6f);
  fh_source_close(src);
  fh_config_free(cfg);
  /* Another folder is still a data.path away. */
  expect_error("fmnist", "no-such-folder", NULL, FH_ERR_DATA, "no such folder", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idx_plain_and_gzip), cmocka_unit_test(test_idx_emnist),
      cmocka_unit_test(test_idx_errors),         cmocka_unit_test(test_cifar),
      cmocka_unit_test(test_cifar_errors),       cmocka_unit_test(test_leaf), cmocka_unit_test(test_dataset_from_leaf),
      cmocka_unit_test(test_leaf_errors),        cmocka_unit_test(test_dataset_from_idx),
      cmocka_unit_test(test_norm_keys),         cmocka_unit_test(test_fmnist_debian),
  };
  return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
