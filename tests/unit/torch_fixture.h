/* Reader for the PyTorch reference fixtures written by tests/fixtures/make_*_fixtures.py,
 * and the elementwise comparison against them, for the nn unit tests.
 *
 * Format: whitespace-separated records "name ndim d0 .. d{ndim-1} v0 v1 ..."
 * (values row-major, in double), with '#' comment lines between them. */
#ifndef FH_TESTS_TORCH_FIXTURE_H
#define FH_TESTS_TORCH_FIXTURE_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
  char name[96];
  int ndim, shape[4];
  size_t n;
  double *v; /* [n] */
} torch_tensor;

typedef struct {
  const char *path;
  torch_tensor *tensors; /* [count] */
  int count;
} torch_fixture;

static inline void torch_fixture_free(torch_fixture *fx) {
  for (int i = 0; i < fx->count; i++) free(fx->tensors[i].v);
  free(fx->tensors);
  fx->tensors = NULL;
  fx->count = 0;
}

/* 0, or -1 with a message on stderr naming the file (and nothing held). */
static inline int torch_fixture_load(torch_fixture *fx, const char *path) {
  memset(fx, 0, sizeof *fx);
  fx->path = path;
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return -1;
  }
  int cap = 0;
  char line[256];
  for (;;) {
    int c = fgetc(f);
    if (c == EOF) break;
    if (c == '#') { /* comment line */
      if (!fgets(line, sizeof line, f)) break;
      continue;
    }
    if (c == '\n' || c == ' ') continue;
    ungetc(c, f);
    if (fx->count == cap) {
      cap = cap ? 2 * cap : 64;
      fx->tensors = realloc(fx->tensors, (size_t)cap * sizeof *fx->tensors);
    }
    torch_tensor *t = &fx->tensors[fx->count++];
    memset(t, 0, sizeof *t);
    if (fscanf(f, "%95s %d", t->name, &t->ndim) != 2 || t->ndim < 1 || t->ndim > 4) goto bad;
    t->n = 1;
    for (int d = 0; d < t->ndim; d++) {
      if (fscanf(f, "%d", &t->shape[d]) != 1) goto bad;
      t->n *= (size_t)t->shape[d];
    }
    t->v = malloc(t->n * sizeof(double));
    for (size_t i = 0; i < t->n; i++)
      if (fscanf(f, "%lf", &t->v[i]) != 1) goto bad;
  }
  fclose(f);
  return 0;
bad:
  fprintf(stderr, "%s: malformed near tensor %d\n", path, fx->count);
  fclose(f);
  torch_fixture_free(fx);
  return -1;
}

/* The tensor named by the printf-style fmt; a missing one fails the test. */
static inline const torch_tensor *fixture_get(const torch_fixture *fx, const char *fmt, ...) {
  char name[96];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  for (int i = 0; i < fx->count; i++)
    if (strcmp(fx->tensors[i].name, name) == 0) return &fx->tensors[i];
  fail_msg("%s has no tensor '%s'", fx->path, name);
  return NULL;
}

static inline void to_float(float *dst, const torch_tensor *t) {
  for (size_t i = 0; i < t->n; i++) dst[i] = (float)t->v[i];
}

/* Every element within rtol of the reference, relative to the larger of its
 * own magnitude and 1% of the tensor's largest: an element that is small
 * through cancellation carries the rounding of the larger terms summed into
 * it. Exact zeros (dead ReLU units) are held to that floor, not excused. */
static inline void assert_close(const char *what, const float *got, const torch_tensor *want,
                                double rtol) {
  double scale = 0.0;
  for (size_t i = 0; i < want->n; i++) scale = fmax(scale, fabs(want->v[i]));
  double worst = 0.0;
  size_t worst_i = 0;
  for (size_t i = 0; i < want->n; i++) {
    const double err = fabs((double)got[i] - want->v[i]) / fmax(fabs(want->v[i]), 1e-2 * scale);
    if (!(err <= worst)) worst = err, worst_i = i;
  }
  if (!(worst <= rtol))
    fail_msg("%s: element %zu is %.9g, PyTorch %.9g (relative error %.3g > %.1g)", what, worst_i,
             (double)got[worst_i], want->v[worst_i], worst, rtol);
}

/* A scalar against PyTorch's, to a relative tolerance. */
static inline void assert_scalar_close(const char *what, double got, double want, double rtol) {
  if (!(fabs(got - want) <= rtol * fabs(want)))
    fail_msg("%s: %.9g, PyTorch %.9g (relative error %.3g > %.1g)", what, got, want,
             fabs(got - want) / fabs(want), rtol);
}

#endif
