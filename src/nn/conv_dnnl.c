/* Convolutions through oneDNN (see conv_dnnl.h). */
#include "nn/conv_dnnl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fh_conv_backend g_backend = FH_CONV_AUTO;

#ifndef FEDHPC_HAVE_DNNL

int fh_conv_dnnl_built(void) { return 0; }

int fh_conv_backend_set(fh_conv_backend b) {
  if (b == FH_CONV_ONEDNN) return -1;
  g_backend = b;
  return 0;
}

const char *fh_conv_backend_name(void) { return "portable"; }

int fh_conv_dnnl_forward(float *y, const float *x, const float *W, const float *b, int B,
                         const fh_conv2d_geom *g, int groups) {
  (void)y, (void)x, (void)W, (void)b, (void)B, (void)g, (void)groups;
  return -1;
}

int fh_conv_dnnl_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                          const float *W, int B, const fh_conv2d_geom *g, int groups) {
  (void)dx, (void)dW, (void)db, (void)dy, (void)x, (void)W, (void)B, (void)g, (void)groups;
  return -1;
}

#else

#include <dnnl.h>
#include <omp.h>

/* Batches above this many samples run in pieces of at most this size (the
 * pieces a function of B alone): it bounds the work area (blocked copies of
 * a piece's activations) and the number of shapes the table holds. */
#define MAX_PIECE 64

/* Output maps of fewer positions (2x2 and 1x1: the last stage of a ResNet on
 * 32x32 inputs with a pooled stem) take the portable kernels: oneDNN's direct
 * kernels block over the map and run there at 45-50 GFLOP/s against 65 for
 * the whole-batch sgemm of conv2d.c (resnet8, batch 16, this machine's AVX-512
 * core); from 4x4 on oneDNN is ahead (93 against 58). */
#define MIN_POSITIONS 5

/* A call that oneDNN refuses after the primitives exist (out of memory, a
 * library fault) cannot fall back without the ranks disagreeing: it stops
 * the process. */
static void check(dnnl_status_t s, const char *what) {
  if (s == dnnl_success) return;
  fprintf(stderr, "fedhpc: oneDNN convolution: %s failed (status %d); rebuild with "
                  "-DFEDHPC_ONEDNN=OFF or set model.conv = portable\n", what, (int)s);
  abort();
}

/* ---- engine, work area -------------------------------------------------------- */

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static int g_usable = -1; /* -1: not probed yet */
static char *g_area;      /* the work area: blocked copies and scratchpads */
static size_t g_area_size;

/* oneDNN serves a CPU with AVX2 or better with its JIT kernels; below that
 * its kernels are references and the portable ones are faster. */
static int usable(void) {
  if (g_usable >= 0) return g_usable;
  g_usable = 0;
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  if ((isa & dnnl_cpu_isa_avx2) != dnnl_cpu_isa_avx2) return 0;
  /* One thread per MPI rank: Debian's libdnnl runs on OpenMP, whose pool
   * would otherwise take every core of the node in each rank. */
  omp_set_num_threads(1);
  if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) return 0;
  if (dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success) return 0;
  g_usable = 1;
  return 1;
}

static void area_reserve(size_t bytes) {
  if (bytes <= g_area_size) return;
  free(g_area);
  g_area = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!g_area) {
    fprintf(stderr, "fedhpc: oneDNN convolution: out of memory for a %zu-byte work area\n",
            bytes);
    abort();
  }
  g_area_size = bytes;
}

/* ---- staged arguments ----------------------------------------------------------- */

/* One argument of a primitive that corresponds to a plain buffer of the
 * caller (x, W, y, dy, dx, dW): either the primitive reads or writes the
 * plain buffer itself (reorder NULL), or a reorder copies it into (or out of)
 * a region of the work area in the layout the primitive chose. */
typedef struct {
  dnnl_primitive_t reorder;
  dnnl_memory_t user, inner, sp; /* sp: the reorder's scratchpad, NULL if none */
  size_t off, sp_off;            /* work-area offsets of inner and sp           */
} stage;

static size_t md_bytes(const dnnl_memory_desc_t *md) {
  return (dnnl_memory_desc_get_size(md) + 63) / 64 * 64;
}

static dnnl_memory_t memory(const dnnl_memory_desc_t *md) {
  dnnl_memory_t m;
  check(dnnl_memory_create(&m, md, g_engine, DNNL_MEMORY_NONE), "memory_create");
  return m;
}

/* into: 1 for user -> primitive layout, 0 for the reverse. *cursor: the next
 * free byte of the call's work area. */
static void stage_make(stage *s, const dnnl_memory_desc_t *user, const dnnl_memory_desc_t *inner,
                       int into, size_t *cursor) {
  memset(s, 0, sizeof *s);
  if (dnnl_memory_desc_equal(user, inner)) {
    s->user = memory(user);
    return;
  }
  dnnl_primitive_attr_t attr;
  check(dnnl_primitive_attr_create(&attr), "attr_create");
  check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad");
  dnnl_primitive_desc_t pd;
  check(into ? dnnl_reorder_primitive_desc_create(&pd, user, g_engine, inner, g_engine, attr)
             : dnnl_reorder_primitive_desc_create(&pd, inner, g_engine, user, g_engine, attr),
        "reorder_primitive_desc_create");
  dnnl_primitive_attr_destroy(attr);
  const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (sp && dnnl_memory_desc_get_size(sp) > 0) {
    s->sp = memory(sp);
    s->sp_off = *cursor, *cursor += md_bytes(sp);
  }
  check(dnnl_primitive_create(&s->reorder, pd), "reorder create");
  dnnl_primitive_desc_destroy(pd);
  s->user = memory(user);
  s->inner = memory(inner);
  s->off = *cursor, *cursor += md_bytes(inner);
}

static void set_handle(dnnl_memory_t m, void *p) {
  check(dnnl_memory_set_data_handle_v2(m, p, g_stream), "set_data_handle");
}

static void run(dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args) {
  check(dnnl_primitive_execute(p, g_stream, n, args), "execute");
}

static void run_reorder(const stage *s, dnnl_memory_t from, dnnl_memory_t to) {
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, s->sp}};
  if (s->sp) set_handle(s->sp, g_area + s->sp_off);
  run(s->reorder, s->sp ? 3 : 2, a);
}

/* Points the stage at the caller's buffer; with a reorder, copies it in.
 * Returns the memory the primitive takes. */
static dnnl_memory_t stage_in(const stage *s, const void *user) {
  set_handle(s->user, (void *)user);
  if (!s->reorder) return s->user;
  set_handle(s->inner, g_area + s->off);
  run_reorder(s, s->user, s->inner);
  return s->inner;
}

/* The memory the primitive writes for the caller's buffer user (stage_out
 * then copies it there). */
static dnnl_memory_t stage_target(const stage *s, void *user) {
  set_handle(s->user, user);
  if (!s->reorder) return s->user;
  set_handle(s->inner, g_area + s->off);
  return s->inner;
}

static void stage_out(const stage *s) {
  if (s->reorder) run_reorder(s, s->inner, s->user);
}

/* ---- the table of shapes ---------------------------------------------------------- */

enum { FWD, BWD_D, BWD_W };

typedef struct {
  fh_conv2d_geom g;
  int groups, B, bias;
  int served; /* 0: oneDNN offers only reference kernels; portable path */
  dnnl_primitive_t prim[3];
  dnnl_memory_t sp[3]; /* scratchpads, NULL where none */
  size_t sp_off[3];
  /* forward: x, W in, y out; backward data: dy, W in, dx out; backward
   * weights: x, dy in, dW out (into a plain copy that is then added) */
  stage f_x, f_w, f_y, d_dy, d_w, d_dx, w_x, w_dy, w_dw;
  int dy_shared;          /* both backward primitives take dy in one blocked
                             layout: the weight gradient reads d_dy's copy */
  dnnl_memory_t bias_mem; /* plain [O]: the forward's b, the backward's db */
  size_t dw_off, db_off;  /* plain copies of dW, db in the work area */
} entry;

static entry *g_table;
static int g_n, g_cap;

static dnnl_primitive_desc_t make_pd(const void *desc, const_dnnl_primitive_desc_t hint) {
  dnnl_primitive_attr_t attr;
  check(dnnl_primitive_attr_create(&attr), "attr_create");
  check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad");
  dnnl_primitive_desc_t pd = NULL;
  if (dnnl_primitive_desc_create(&pd, desc, attr, g_engine, hint) != dnnl_success) pd = NULL;
  dnnl_primitive_attr_destroy(attr);
  return pd;
}

static const dnnl_memory_desc_t *q(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
  return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* The primitive of pd into e->prim[k], its scratchpad at *cursor. */
static void take(entry *e, int k, const_dnnl_primitive_desc_t pd, size_t *cursor) {
  const dnnl_memory_desc_t *sp = q(pd, dnnl_query_scratchpad_md);
  if (sp && dnnl_memory_desc_get_size(sp) > 0) {
    e->sp[k] = memory(sp);
    e->sp_off[k] = *cursor, *cursor += md_bytes(sp);
  }
  check(dnnl_primitive_create(&e->prim[k], pd), "primitive_create");
}

static const char *impl_name(const_dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
  return s;
}

/* Descriptors, primitives and stages of one shape. The forward uses the
 * area from offset 0, the backward also from 0 (they never overlap in time);
 * the area grows to the larger of the two. */
static void entry_make(entry *e) {
  const fh_conv2d_geom *g = &e->g;
  const int G = e->groups;
  const dnnl_dims_t xd = {e->B, g->in_c, g->in_h, g->in_w};
  const dnnl_dims_t yd = {e->B, g->out_c, g->out_h, g->out_w};
  const dnnl_dims_t bd = {g->out_c};
  const dnnl_dims_t wd4 = {g->out_c, g->in_c, g->kernel_h, g->kernel_w};
  const dnnl_dims_t wd5 = {G, g->out_c / G, g->in_c / G, g->kernel_h, g->kernel_w};
  const dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->padding, g->padding};
  dnnl_memory_desc_t ux, uy, uw, ub, ax, ay, aw;
  check(dnnl_memory_desc_init_by_tag(&ux, 4, xd, dnnl_f32, dnnl_nchw), "md");
  check(dnnl_memory_desc_init_by_tag(&uy, 4, yd, dnnl_f32, dnnl_nchw), "md");
  check(dnnl_memory_desc_init_by_tag(&ub, 1, bd, dnnl_f32, dnnl_x), "md");
  if (G == 1)
    check(dnnl_memory_desc_init_by_tag(&uw, 4, wd4, dnnl_f32, dnnl_oihw), "md");
  else
    check(dnnl_memory_desc_init_by_tag(&uw, 5, wd5, dnnl_f32, dnnl_goihw), "md");
  check(dnnl_memory_desc_init_by_tag(&ax, 4, xd, dnnl_f32, dnnl_format_tag_any), "md");
  check(dnnl_memory_desc_init_by_tag(&ay, 4, yd, dnnl_f32, dnnl_format_tag_any), "md");
  check(dnnl_memory_desc_init_by_tag(&aw, G == 1 ? 4 : 5, G == 1 ? wd4 : wd5, dnnl_f32,
                                     dnnl_format_tag_any), "md");
  const dnnl_memory_desc_t *bias = e->bias ? &ub : NULL;
  dnnl_convolution_desc_t fd, dd, wdsc;
  check(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           &ax, &aw, bias, &ay, strides, pad, pad), "fwd desc");
  check(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &ax, &aw, &ay,
                                                 strides, pad, pad), "bwd_d desc");
  check(dnnl_convolution_backward_weights_desc_init(&wdsc, dnnl_convolution_direct, &ax, &aw,
                                                    bias, &ay, strides, pad, pad), "bwd_w desc");
  dnnl_primitive_desc_t pd[3] = {make_pd(&fd, NULL), NULL, NULL};
  if (pd[FWD]) pd[BWD_D] = make_pd(&dd, pd[FWD]), pd[BWD_W] = make_pd(&wdsc, pd[FWD]);
  e->served = 1;
  for (int k = 0; k < 3; k++) {
    const char *s = pd[k] ? impl_name(pd[k]) : NULL;
    if (!s || !strncmp(s, "ref", 3)) e->served = 0;
  }
  if (!e->served) {
    for (int k = 0; k < 3; k++)
      if (pd[k]) dnnl_primitive_desc_destroy(pd[k]);
    return;
  }
  size_t cf = 0, cb = 0;
  stage_make(&e->f_x, &ux, q(pd[FWD], dnnl_query_src_md), 1, &cf);
  stage_make(&e->f_w, &uw, q(pd[FWD], dnnl_query_weights_md), 1, &cf);
  stage_make(&e->f_y, &uy, q(pd[FWD], dnnl_query_dst_md), 0, &cf);
  take(e, FWD, pd[FWD], &cf);
  stage_make(&e->d_dy, &uy, q(pd[BWD_D], dnnl_query_diff_dst_md), 1, &cb);
  stage_make(&e->d_w, &uw, q(pd[BWD_D], dnnl_query_weights_md), 1, &cb);
  stage_make(&e->d_dx, &ux, q(pd[BWD_D], dnnl_query_diff_src_md), 0, &cb);
  take(e, BWD_D, pd[BWD_D], &cb);
  stage_make(&e->w_x, &ux, q(pd[BWD_W], dnnl_query_src_md), 1, &cb);
  stage_make(&e->w_dy, &uy, q(pd[BWD_W], dnnl_query_diff_dst_md), 1, &cb);
  e->dy_shared = e->d_dy.reorder && e->w_dy.reorder &&
                 dnnl_memory_desc_equal(q(pd[BWD_D], dnnl_query_diff_dst_md),
                                        q(pd[BWD_W], dnnl_query_diff_dst_md));
  stage_make(&e->w_dw, &uw, q(pd[BWD_W], dnnl_query_diff_weights_md), 0, &cb);
  e->dw_off = cb, cb += md_bytes(&uw);
  if (e->bias) {
    e->bias_mem = memory(&ub);
    e->db_off = cb, cb += md_bytes(&ub);
  }
  take(e, BWD_W, pd[BWD_W], &cb);
  for (int k = 0; k < 3; k++) dnnl_primitive_desc_destroy(pd[k]);
  area_reserve(cf > cb ? cf : cb);
}

/* The entry of a shape, made on first use. The table only grows, between
 * calls' executions (never while a call holds an entry). */
static entry *lookup(const fh_conv2d_geom *g, int groups, int B, int bias) {
  for (int i = 0; i < g_n; i++) {
    entry *e = &g_table[i];
    if (e->groups == groups && e->B == B && e->bias == bias && !memcmp(&e->g, g, sizeof *g))
      return e;
  }
  if (g_n == g_cap) {
    g_cap = g_cap ? 2 * g_cap : 32;
    entry *t = realloc(g_table, (size_t)g_cap * sizeof *t);
    if (!t) {
      fprintf(stderr, "fedhpc: oneDNN convolution: out of memory for the shape table\n");
      abort();
    }
    g_table = t;
  }
  entry *e = &g_table[g_n++];
  memset(e, 0, sizeof *e);
  e->g = *g, e->groups = groups, e->B = B, e->bias = bias;
  entry_make(e);
  return e;
}

/* ---- the calls ----------------------------------------------------------------------- */

int fh_conv_dnnl_built(void) { return 1; }

int fh_conv_backend_set(fh_conv_backend b) {
  g_backend = b;
  return 0;
}

static int chosen(void) { return g_backend != FH_CONV_PORTABLE && usable(); }

const char *fh_conv_backend_name(void) { return chosen() ? "onednn" : "portable"; }

/* Samples in the piece that starts at n0. */
static int piece(int B, int n0) { return B - n0 < MAX_PIECE ? B - n0 : MAX_PIECE; }

/* Whether both piece sizes of B (MAX_PIECE and the rest) are served: decided
 * before anything runs, so a batch never mixes the two kinds of kernel. */
static int served(const fh_conv2d_geom *g, int groups, int B, int bias) {
  if (!chosen() || g->out_h * g->out_w < MIN_POSITIONS) return 0;
  if (B >= MAX_PIECE && !lookup(g, groups, MAX_PIECE, bias)->served) return 0;
  if (B % MAX_PIECE && !lookup(g, groups, B % MAX_PIECE, bias)->served) return 0;
  return 1;
}

static void scratchpad_arg(const entry *e, int k, dnnl_exec_arg_t *a, int *n) {
  if (!e->sp[k]) return;
  set_handle(e->sp[k], g_area + e->sp_off[k]);
  a[(*n)++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->sp[k]};
}

int fh_conv_dnnl_forward(float *y, const float *x, const float *W, const float *b, int B,
                         const fh_conv2d_geom *g, int groups) {
  if (!served(g, groups, B, b != NULL)) return -1;
  const size_t xs = (size_t)g->in_c * g->in_h * g->in_w;
  const size_t ys = (size_t)g->out_c * g->out_h * g->out_w;
  for (int n0 = 0; n0 < B; n0 += MAX_PIECE) {
    const entry *e = lookup(g, groups, piece(B, n0), b != NULL);
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, stage_in(&e->f_x, x + n0 * xs)},
                            {DNNL_ARG_WEIGHTS, stage_in(&e->f_w, W)},
                            {DNNL_ARG_DST, stage_target(&e->f_y, y + n0 * ys)}};
    int n = 3;
    if (b) {
      set_handle(e->bias_mem, (void *)b);
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bias_mem};
    }
    scratchpad_arg(e, FWD, a, &n);
    run(e->prim[FWD], n, a);
    stage_out(&e->f_y);
  }
  check(dnnl_stream_wait(g_stream), "stream_wait");
  return 0;
}

int fh_conv_dnnl_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                          const float *W, int B, const fh_conv2d_geom *g, int groups) {
  if (!served(g, groups, B, db != NULL)) return -1;
  const size_t xs = (size_t)g->in_c * g->in_h * g->in_w;
  const size_t ys = (size_t)g->out_c * g->out_h * g->out_w;
  const size_t nw = (size_t)g->out_c * (g->in_c / groups) * g->kernel_h * g->kernel_w;
  for (int n0 = 0; n0 < B; n0 += MAX_PIECE) {
    const entry *e = lookup(g, groups, piece(B, n0), db != NULL);
    if (dx) { /* dx = the transposed convolution of dy with W */
      dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, stage_in(&e->d_dy, dy + n0 * ys)},
                              {DNNL_ARG_WEIGHTS, stage_in(&e->d_w, W)},
                              {DNNL_ARG_DIFF_SRC, stage_target(&e->d_dx, dx + n0 * xs)}};
      int n = 3;
      scratchpad_arg(e, BWD_D, a, &n);
      run(e->prim[BWD_D], n, a);
      stage_out(&e->d_dx);
    }
    /* the piece's dW (and db) into plain copies in the area, then added */
    float *dwp = (float *)(g_area + e->dw_off), *dbp = (float *)(g_area + e->db_off);
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, stage_in(&e->w_x, x + n0 * xs)},
                            {DNNL_ARG_DIFF_DST, dx && e->dy_shared
                                                    ? e->d_dy.inner
                                                    : stage_in(&e->w_dy, dy + n0 * ys)},
                            {DNNL_ARG_DIFF_WEIGHTS, stage_target(&e->w_dw, dwp)}};
    int n = 3;
    if (db) {
      set_handle(e->bias_mem, dbp);
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, e->bias_mem};
    }
    scratchpad_arg(e, BWD_W, a, &n);
    run(e->prim[BWD_W], n, a);
    stage_out(&e->w_dw);
    check(dnnl_stream_wait(g_stream), "stream_wait");
    for (size_t i = 0; i < nw; i++) dW[i] += dwp[i];
    if (db)
      for (int o = 0; o < g->out_c; o++) db[o] += dbp[o];
  }
  return 0;
}

#endif
