/* fedhpc bench: speed against the machine's own limits, measured in the same
 * run. (1) Training steps (forward + loss + backward + SGD) in GFLOP/s against
 * cblas_sgemm's rate on this core (a 512^3 product), and for chains of Linear
 * layers also against sgemm running exactly the GEMMs of that step (same
 * shapes, same transposes); without a deck the models are the MLP
 * 784-256-256-10 at batch 64, cnn1 at batch 64 and resnet8 at batch 32 on
 * 3x32x32 inputs, with the share of the step each layer takes (cnn1,
 * resnet8) and cnn1's training samples per second; (2) the round's reduction
 * (MPI_Reduce of the int64 fixed-point accumulator) and the payload broadcast
 * against memcpy of the same bytes; (3) the fixed-point accumulation of one
 * client's contribution against memcpy. Ratios near 1 mean the code runs at
 * the limit of the machine. Each time is the best of several trials (shared
 * machines are noisy).
 *
 * With --models a,b,... (and --batches 10,16,...): for each zoo model and
 * batch size, the median over --steps training steps, in wall and in
 * thread CPU time (the CPU time leaves out the time the process waited for
 * a core on a shared machine), with the 10th-90th percentile spread, in
 * samples per second; scripts/bench_vs_torch.py times PyTorch on the same
 * models in the same run from these lines. */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "nn/conv_dnnl.h"
#include "nn/layer.h"
#include "fl/accumulate.h"
#include "nn/model.h"
#include "nn/optim.h"

static double now(void) { return MPI_Wtime(); }

/* Calls fn until at least min_reps calls and min_s seconds (after one
 * warm-up call); returns the seconds of the fastest call. On a shared,
 * noisy machine the fastest call is the one least disturbed. */
typedef void (*bench_fn)(void *);
static double time_it(bench_fn fn, void *arg, int min_reps, double min_s) {
  fn(arg);
  double best = 1e30, start = now();
  for (int reps = 0; reps < min_reps || now() - start < min_s; reps++) {
    const double t0 = now();
    fn(arg);
    const double t = now() - t0;
    if (t < best) best = t;
  }
  return best;
}

/* The same for collective calls: each call starts after a barrier and lasts
 * until the slowest rank returns; the fastest such call is kept (on cores
 * shared with other work, the one where no rank waited to be scheduled). The
 * ranks agree on the number of calls (at least min_reps, until min_s seconds)
 * through the same reduction that takes the call's time. */
static double time_it_collective(bench_fn fn, void *arg, int min_reps, double min_s, MPI_Comm comm) {
  fn(arg);
  double best = 1e30, start = now();
  for (int reps = 0;; reps++) {
    MPI_Barrier(comm);
    const double t0 = now();
    fn(arg);
    double te[2] = {now() - t0, now() - start};
    MPI_Allreduce(MPI_IN_PLACE, te, 2, MPI_DOUBLE, MPI_MAX, comm);
    if (te[0] < best) best = te[0];
    if (reps + 1 >= min_reps && te[1] >= min_s) break;
  }
  return best;
}

typedef struct {
  fh_model *m;
  const float *x;
  const int32_t *y;
  int B;
  fh_sgd opt;
  float *mom;
  long long steps;
} step_arg;

static void do_step(void *p) {
  step_arg *a = p;
  fh_model_loss_grad(a->m, a->x, a->y, a->B);
  fh_sgd_step(&a->opt, fh_model_params(a->m), fh_model_grads(a->m), a->mom, fh_model_nparams(a->m),
              &a->steps);
}

/* The GEMMs of one training step of a chain of Linear layers: weight [out, in]. */
typedef struct {
  int nl, B;
  int in[64], out[64];
  float *X, *W, *Y, *dW; /* scratch big enough for the largest layer */
} gemm_arg;

static void do_gemms(void *p) {
  gemm_arg *g = p;
  for (int l = 0; l < g->nl; l++) {
    int in = g->in[l], out = g->out[l], B = g->B;
    /* forward Y[B,out] = X[B,in] W^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.f, g->X, in, g->W, in, 0.f, g->Y, out);
    /* backward dW[out,in] = dY^T X */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, B, 1.f, g->Y, out, g->X, in, 0.f, g->dW, in);
    /* backward dX[B,in] = dY W (not needed for the first layer) */
    if (l > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in, out, 1.f, g->Y, out, g->W, in, 0.f, g->X, in);
  }
}

typedef struct {
  void *dst;
  const void *src;
  size_t bytes;
} copy_arg;
static void do_copy(void *p) {
  copy_arg *c = p;
  memcpy(c->dst, c->src, c->bytes);
}

typedef struct {
  fh_accum *acc;
  MPI_Comm comm;
} reduce_arg;
static void do_reduce(void *p) {
  reduce_arg *r = p;
  fh_accum_reduce(r->acc, 0, r->comm);
}

typedef reduce_arg allreduce_arg;
static void do_allreduce(void *p) {
  allreduce_arg *r = p;
  fh_accum_allreduce(r->acc, r->comm);
}

typedef struct {
  float *buf;
  size_t n;
} bcast_arg;
static void do_bcast(void *p) {
  bcast_arg *b = p;
  MPI_Bcast(b->buf, (int)b->n, MPI_FLOAT, 0, MPI_COMM_WORLD);
}

typedef struct {
  fh_accum *acc;
  const float *x;
} add_arg;
static void do_add(void *p) {
  add_arg *a = p;
  fh_accum_add(a->acc, a->x, 1.0);
}

/* The machine's sgemm rate on one core: C [n, n] = A [n, n] B [n, n]. */
typedef struct {
  int n;
  float *A, *B, *C;
} square_arg;

static void do_square(void *p) {
  square_arg *q = p;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q->n, q->n, q->n, 1.f, q->A, q->n, q->B,
              q->n, 0.f, q->C, q->n);
}

static double sgemm_rate(fh_rng *r, int min_reps) {
  square_arg q = {512, NULL, NULL, NULL};
  const size_t nn = (size_t)q.n * q.n;
  q.A = fh_malloc(nn * sizeof(float)), q.B = fh_malloc(nn * sizeof(float));
  q.C = fh_malloc(nn * sizeof(float));
  fh_rng_normal_fill(r, q.A, nn, 0.f, 1.f);
  fh_rng_normal_fill(r, q.B, nn, 0.f, 1.f);
  const double t = time_it(do_square, &q, min_reps, 0.2);
  free(q.A), free(q.B), free(q.C);
  return 2.0 * q.n * (double)q.n * q.n / t * 1e-9;
}

/* One model under test: built from cfg for [c, h, w] inputs, C classes, a
 * batch of B random samples, and its step timed. */
typedef struct {
  fh_model *m;
  float *x;
  int32_t *y;
  int B;
  double t_step, flops;
} bench_model;

static int bench_model_make(bench_model *bm, const fh_config *cfg, int c, int h, int w, int C, int B,
                            fh_rng *r) {
  memset(bm, 0, sizeof *bm);
  FH_TRY(fh_model_create(&bm->m, cfg, c, h, w, C, B));
  fh_model_init(bm->m, r);
  const size_t d = (size_t)c * h * w;
  bm->x = fh_malloc((size_t)B * d * sizeof(float));
  bm->y = fh_malloc((size_t)B * sizeof(int32_t));
  fh_rng_normal_fill(r, bm->x, (size_t)B * d, 0.f, 1.f);
  for (int i = 0; i < B; i++) bm->y[i] = (int32_t)fh_rng_below(r, (uint32_t)C);
  bm->B = B;
  bm->flops = fh_model_flops_forward(bm->m, B) + fh_model_flops_backward(bm->m, B);
  return 0;
}

static void bench_model_free(bench_model *bm) {
  fh_model_free(bm->m);
  free(bm->x);
  free(bm->y);
}

/* Seconds of one training step (loss, gradient, SGD with momentum). */
static double time_step(bench_model *bm, int min_reps) {
  step_arg sa = {bm->m, bm->x, bm->y, bm->B, {0.01f, 0.9f, 0.f, 1e-4f, 0},
                 fh_calloc(fh_model_nparams(bm->m), sizeof(float)), 0};
  bm->t_step = time_it(do_step, &sa, min_reps, 0.3);
  free(sa.mom);
  return bm->t_step;
}

/* Where the time of a step goes: each layer's forward and backward, timed
 * (thread CPU time) inside one loss-and-gradient pass, the least of 10
 * passes per layer. */
static void print_layer_shares(bench_model *bm) {
  const int n = fh_model_nlayers(bm->m);
  double *tf = fh_malloc((size_t)n * sizeof(double)), *tb = fh_malloc((size_t)n * sizeof(double));
  double *bf = fh_malloc((size_t)n * sizeof(double)), *bb = fh_malloc((size_t)n * sizeof(double));
  for (int i = 0; i < n; i++) bf[i] = bb[i] = 1e30;
  for (int rep = 0; rep < 10; rep++) {
    fh_model_loss_grad_timed(bm->m, bm->x, bm->y, bm->B, tf, tb);
    for (int i = 0; i < n; i++) {
      if (tf[i] < bf[i]) bf[i] = tf[i];
      if (tb[i] < bb[i]) bb[i] = tb[i];
    }
  }
  double total = 0.0;
  for (int i = 0; i < n; i++) total += bf[i] + bb[i];
  printf("    per layer (%s, batch %d; CPU time, least of 10 passes; layers under 1%% summed):\n",
         fh_model_arch(bm->m), bm->B);
  printf("      %-22s %9s %9s %7s %9s\n", "layer", "fwd ms", "bwd ms", "share", "GFLOP/s");
  double rest = 0.0;
  for (int i = 0; i < n; i++) {
    const fh_layer *L = fh_model_layer(bm->m, i);
    const double t = bf[i] + bb[i];
    if (t < 0.01 * total) {
      rest += t;
      continue;
    }
    const double fl = L->ops->flops_forward(L, bm->B) + L->ops->flops_backward(L, bm->B);
    char rate[16] = "-";
    if (fl > 0) snprintf(rate, sizeof rate, "%.1f", fl / t * 1e-9);
    printf("      %-22s %9.3f %9.3f %6.1f%% %9s\n", L->name, bf[i] * 1e3, bb[i] * 1e3,
           100.0 * t / total, rate);
  }
  printf("      %-22s %19.3f %6.1f%%\n", "(other layers)", rest * 1e3, 100.0 * rest / total);
  printf("      %-22s %19.3f ms in layers; the step adds the loss and the SGD update\n", "(sum)",
         total * 1e3);
  free(tf), free(tb), free(bf), free(bb);
}

/* The GEMMs of one training step of a chain of Linear layers, or 0 when the
 * model has other kinds of layers with products (then there is no such
 * comparison). */
static double time_linear_gemms(fh_model *m, int B, fh_rng *r, int min_reps, double *gflops) {
  gemm_arg ga = {.B = B};
  size_t maxw = 0, maxio = 0;
  double gemm_flops = 0;
  for (int i = 0; i < fh_model_nlayers(m); i++) {
    const fh_layer *L = fh_model_layer(m, i);
    if (L->kind == FH_LAYER_RELU) continue;
    if (L->kind != FH_LAYER_LINEAR || ga.nl == 64) return 0.0;
    int out = (int)L->out_size, in = (int)L->in_size;
    ga.in[ga.nl] = in;
    ga.out[ga.nl] = out;
    gemm_flops += 2.0 * B * in * out * (ga.nl > 0 ? 3 : 2);
    ga.nl++;
    if ((size_t)in * out > maxw) maxw = (size_t)in * out;
    if ((size_t)B * (in > out ? in : out) > maxio) maxio = (size_t)B * (in > out ? in : out);
  }
  ga.X = fh_calloc(maxio, sizeof(float));
  ga.Y = fh_calloc(maxio, sizeof(float));
  ga.W = fh_calloc(maxw, sizeof(float));
  ga.dW = fh_calloc(maxw, sizeof(float));
  fh_rng_normal_fill(r, ga.X, maxio, 0.f, 1.f);
  fh_rng_normal_fill(r, ga.W, maxw, 0.f, 0.05f);
  const double t = time_it(do_gemms, &ga, min_reps, 0.2);
  free(ga.X), free(ga.Y), free(ga.W), free(ga.dW);
  *gflops = gemm_flops / t * 1e-9;
  return t;
}

static void print_step(const bench_model *bm, double sgemm_gf) {
  const double gf = bm->flops / bm->t_step * 1e-9;
  printf("  %-10s batch %3d  step %9.3f ms  %7.2f GFLOP/s  ratio to sgemm %.3f  (%zu parameters, "
         "%.3g GFLOP per step)\n",
         fh_model_arch(bm->m), bm->B, bm->t_step * 1e3, gf, gf / sgemm_gf,
         fh_model_nparams(bm->m), bm->flops * 1e-9);
}

/* A config with the deck's keys and model.arch (and model.hidden) set. */
static int arch_config(fh_config **cfg, const char *arch, const char *hidden) {
  const fh_key_spec *tables[64];
  const int nt = fh_all_key_tables(tables, 64);
  char a[64], h[64];
  snprintf(a, sizeof a, "model.arch=%s", arch);
  snprintf(h, sizeof h, "model.hidden=%s", hidden);
  const char *sets[2] = {a, h};
  return fh_config_load(cfg, NULL, sets, 2, tables, nt);
}

/* ---- fedhpc bench --models: medians per model and batch size ------------------ */

static double thread_cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of v [n], sorted in place (nearest rank). */
static double quantile(double *v, int n, double q) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  int i = (int)(q * (n - 1) + 0.5);
  return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* The input shape a zoo model is benchmarked on: flat 784 for the MLP,
 * (Fashion-)MNIST's 1x28x28 for the layer lists made for it, CIFAR's 3x32x32
 * for the other convolutional ones. */
static void zoo_input(const char *arch, int shape[3]) {
  static const char *const mnist[] = {"lenet5", "augfl_fmnist", "mnist_cnn", "mcmahan_cnn"};
  shape[0] = 3, shape[1] = 32, shape[2] = 32;
  if (strcmp(arch, "mlp") == 0) shape[0] = 784, shape[1] = 1, shape[2] = 1;
  for (size_t k = 0; k < sizeof mnist / sizeof mnist[0]; k++)
    if (strcmp(arch, mnist[k]) == 0) shape[0] = 1, shape[1] = 28, shape[2] = 28;
}

/* ---- convolution layers against sgemm on their own products ------------------ */

/* The products an im2col convolution of layer L would run for a batch of B,
 * per group: forward [O, K] x [K, N], weight gradient [O, N] x [N, K], and
 * (when the layer passes a gradient down) input gradient [K, O] x [O, N],
 * with K = C / G kh kw, N = B OH OW. */
typedef struct {
  int G, O, K, N, dx;
} conv_gemm;

static conv_gemm conv_gemm_of(const fh_layer *L, int B) {
  conv_gemm c;
  c.G = L->in_shape[0] / L->param[0].shape[1]; /* weight [O, C / G, kh, kw] */
  c.O = L->out_shape[0] / c.G;
  c.K = L->param[0].shape[1] * L->param[0].shape[2] * L->param[0].shape[3];
  c.N = B * L->out_shape[1] * L->out_shape[2];
  c.dx = L->input >= 0;
  return c;
}

typedef struct {
  conv_gemm c;
  float *a, *b, *out; /* each max(O K, K N, O N) floats */
} conv_gemm_arg;

static void do_conv_gemms(void *p) {
  conv_gemm_arg *g = p;
  const conv_gemm c = g->c;
  for (int k = 0; k < c.G; k++) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c.O, c.N, c.K, 1.0f, g->a, c.K, g->b,
                c.N, 0.0f, g->out, c.N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c.O, c.K, c.N, 1.0f, g->a, c.N, g->b,
                c.N, 1.0f, g->out, c.K);
    if (c.dx)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c.K, c.N, c.O, 1.0f, g->a, c.K, g->b,
                  c.N, 0.0f, g->out, c.N);
  }
}

static double thread_cpu_s(void);

/* Thread CPU seconds of the fastest of reps calls of fn (after one warm-up). */
static double best_cpu(bench_fn fn, void *arg, int reps) {
  fn(arg);
  double best = 1e30;
  for (int i = 0; i < reps; i++) {
    const double t0 = thread_cpu_s();
    fn(arg);
    const double t = thread_cpu_s() - t0;
    if (t < best) best = t;
  }
  return best;
}

/* The convolution layers of a model: their forward + backward FLOP rate
 * (least of 5 passes, CPU time) against sgemm running the same products
 * (the GEMMs of an im2col convolution of each layer, same shapes). Prints
 * one line; no line for a model without convolutions. */
static void print_conv_vs_sgemm(bench_model *bm) {
  const int n = fh_model_nlayers(bm->m);
  double *tf = fh_malloc((size_t)n * sizeof(double)), *tb = fh_malloc((size_t)n * sizeof(double));
  double *best = fh_malloc((size_t)n * sizeof(double));
  for (int i = 0; i < n; i++) best[i] = 1e30;
  for (int rep = 0; rep < 5; rep++) {
    fh_model_loss_grad_timed(bm->m, bm->x, bm->y, bm->B, tf, tb);
    for (int i = 0; i < n; i++)
      if (tf[i] + tb[i] < best[i]) best[i] = tf[i] + tb[i];
  }
  double t_conv = 0.0, t_gemm = 0.0, flops = 0.0;
  for (int i = 0; i < n; i++) {
    const fh_layer *L = fh_model_layer(bm->m, i);
    if (L->kind != FH_LAYER_CONV2D) continue;
    conv_gemm_arg g = {conv_gemm_of(L, bm->B), NULL, NULL, NULL};
    size_t most = (size_t)g.c.O * g.c.K;
    if ((size_t)g.c.K * g.c.N > most) most = (size_t)g.c.K * g.c.N;
    if ((size_t)g.c.O * g.c.N > most) most = (size_t)g.c.O * g.c.N;
    g.a = fh_calloc(most, sizeof(float)), g.b = fh_calloc(most, sizeof(float));
    g.out = fh_calloc(most, sizeof(float));
    t_gemm += best_cpu(do_conv_gemms, &g, 5);
    free(g.a), free(g.b), free(g.out);
    t_conv += best[i];
    flops += L->ops->flops_forward(L, bm->B) + L->ops->flops_backward(L, bm->B);
  }
  if (flops > 0)
    printf("    conv layers (%s, batch %d, %s): %.3f ms, %.1f GFLOP/s; sgemm on the same products "
           "%.1f GFLOP/s; conv of sgemm %.3f\n",
           fh_model_arch(bm->m), bm->B, fh_conv_backend_name(), t_conv * 1e3,
           flops / t_conv * 1e-9, flops / t_gemm * 1e-9, t_gemm / t_conv);
  free(tf), free(tb), free(best);
}

/* One model at one batch size: 2 warm-up steps, then steps timed one by one. */
static int bench_one_model(const char *arch, const char *hidden, int B, int steps,
                           double sgemm_gf, fh_rng *r, int rank) {
  fh_config *acfg = NULL;
  bench_model bm;
  int shape[3];
  zoo_input(arch, shape);
  int rc = arch_config(&acfg, arch, hidden);
  if (rc == 0) rc = bench_model_make(&bm, acfg, shape[0], shape[1], shape[2], 10, B, r);
  fh_config_free(acfg);
  FH_TRY(fh_error_agree(MPI_COMM_WORLD, rc));
  step_arg sa = {bm.m, bm.x, bm.y, bm.B, {0.01f, 0.9f, 0.f, 1e-4f, 0},
                 fh_calloc(fh_model_nparams(bm.m), sizeof(float)), 0};
  double *wall = fh_malloc((size_t)steps * sizeof(double));
  double *cpu = fh_malloc((size_t)steps * sizeof(double));
  do_step(&sa), do_step(&sa);
  for (int i = 0; i < steps; i++) {
    const double w0 = now(), c0 = thread_cpu_s();
    do_step(&sa);
    cpu[i] = thread_cpu_s() - c0, wall[i] = now() - w0;
  }
  const double w50 = quantile(wall, steps, 0.5), w10 = quantile(wall, steps, 0.1),
               w90 = quantile(wall, steps, 0.9);
  const double c50 = quantile(cpu, steps, 0.5), c10 = quantile(cpu, steps, 0.1),
               c90 = quantile(cpu, steps, 0.9);
  if (rank == 0)
    printf("  %-10s batch %3d  wall %9.3f ms [%.3f, %.3f]  cpu %9.3f ms [%.3f, %.3f]  "
           "samples/s %9.0f  cpu samples/s %9.0f  of sgemm %.3f\n",
           arch, B, w50 * 1e3, w10 * 1e3, w90 * 1e3, c50 * 1e3, c10 * 1e3, c90 * 1e3, B / w50,
           B / c50, bm.flops / c50 * 1e-9 / sgemm_gf);
  if (rank == 0) print_conv_vs_sgemm(&bm);
  fflush(stdout);
  free(wall), free(cpu), free(sa.mom);
  bench_model_free(&bm);
  return 0;
}

/* Comma-separated positive integers into v (at most cap); their count, or -1. */
static int parse_int_list(const char *s, int *v, int cap) {
  int n = 0;
  while (*s) {
    char *end;
    const long x = strtol(s, &end, 10);
    if (end == s || x < 1 || x > 1 << 20 || n == cap) return -1;
    v[n++] = (int)x;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return -1;
  }
  return n;
}

static int bench_models(const char *models, const char *batches, const char *hidden, int steps,
                        double sgemm_gf, fh_rng *r, int rank) {
  int bs[16], nb = parse_int_list(batches ? batches : "10,16,32,64", bs, 16);
  if (nb < 1) return FH_FAIL(FH_ERR_USAGE, "--batches '%s': expected e.g. 10,16,32,64", batches);
  if (rank == 0)
    printf("  training steps, median over %d steps [10th, 90th percentile]; model.hidden=%s "
           "for mlp\n",
           steps, hidden);
  char list[512];
  snprintf(list, sizeof list, "%s", models);
  for (char *save = NULL, *arch = strtok_r(list, ",", &save); arch;
       arch = strtok_r(NULL, ",", &save))
    for (int k = 0; k < nb; k++) FH_TRY(bench_one_model(arch, hidden, bs[k], steps, sgemm_gf, r, rank));
  return 0;
}

/* ---- the command ------------------------------------------------------------- */

/* The command line: a deck (or --set) picks one model, otherwise the suite. */
typedef struct {
  int has_deck, min_reps, steps;
  int shape[3], classes;
  const char *batch, *models, *batches, *hidden;
} bench_opts;

static int parse_args(int argc, char **argv, fh_config **cfg, bench_opts *o) {
  static const char *const opts[] = {"--batch", "--reps",  "--input", "--models",
                                     "--batches", "--steps", "--hidden", NULL};
  const char *vals[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  memset(o, 0, sizeof *o);
  for (int i = 0; i < argc; i++) {
    if (argv[i][0] == '-') {
      int takes = strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "-s") == 0;
      for (int k = 0; opts[k]; k++) takes |= strcmp(argv[i], opts[k]) == 0;
      if (takes)
        i++;
      else if (strncmp(argv[i], "--set=", 6) == 0)
        o->has_deck = 1; /* a model chosen on the command line */
      continue;
    }
    o->has_deck = 1;
  }
  for (int i = 0; i + 1 < argc; i++)
    if (strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "-s") == 0) o->has_deck = 1;
  FH_TRY(fh_load_config_from_args(argc, argv, 0, cfg, opts, vals));
  o->batch = vals[0], o->models = vals[3], o->batches = vals[4];
  o->hidden = vals[6] ? vals[6] : "200,200";
  o->min_reps = vals[1] ? atoi(vals[1]) : 10;
  o->steps = vals[5] ? atoi(vals[5]) : 20;
  o->shape[0] = 784, o->shape[1] = 1, o->shape[2] = 1, o->classes = 10;
  int rc = 0;
  if (o->min_reps < 1) rc = FH_FAIL(FH_ERR_USAGE, "--reps must be positive");
  if (rc == 0 && o->steps < 1) rc = FH_FAIL(FH_ERR_USAGE, "--steps must be positive");
  if (rc == 0 && o->batch && atoi(o->batch) < 1) rc = FH_FAIL(FH_ERR_USAGE, "--batch must be positive");
  if (rc == 0 && o->has_deck && !o->models) {
    if (vals[2]) {
      char tail;
      if (sscanf(vals[2], "%d,%d,%d%c", &o->shape[0], &o->shape[1], &o->shape[2], &tail) != 3 ||
          o->shape[0] < 1 || o->shape[1] < 1 || o->shape[2] < 1)
        rc = FH_FAIL(FH_ERR_USAGE, "--input '%s': expected C,H,W, e.g. 3,32,32", vals[2]);
    } else { /* the deck's data set: its sample shape and classes, no samples */
      fh_dataset *ds = NULL;
      rc = fh_dataset_load(&ds, *cfg, 0, 0, 0, 1);
      if (rc == 0)
        o->shape[0] = ds->c, o->shape[1] = ds->h, o->shape[2] = ds->w, o->classes = ds->num_classes;
      fh_dataset_free(ds);
    }
  }
  return rc;
}

/* (1) with a deck: its model, step and per-layer shares. */
static int bench_deck_model(bench_model *out, const fh_config *cfg, const bench_opts *o,
                            double sgemm_gf, fh_rng *r, int rank) {
  const int B = o->batch ? atoi(o->batch) : 64;
  const int rc = bench_model_make(out, cfg, o->shape[0], o->shape[1], o->shape[2], o->classes, B, r);
  FH_TRY(fh_error_agree(MPI_COMM_WORLD, rc));
  time_step(out, o->min_reps);
  if (rank == 0) {
    print_step(out, sgemm_gf);
    print_layer_shares(out);
  }
  return 0;
}

/* (1) without a deck: the MLP, then cnn1 and resnet8 on CIFAR-shaped inputs;
 * the MLP is kept in *keep for (2). */
static int bench_suite(bench_model *keep, const bench_opts *o, double sgemm_gf, fh_rng *r,
                       int rank) {
  static const struct {
    const char *arch;
    int c, h, w, B, shares;
  } suite[] = {{"mlp", 784, 1, 1, 64, 0}, {"cnn1", 3, 32, 32, 64, 1}, {"resnet8", 3, 32, 32, 32, 1}};
  for (size_t k = 0; k < sizeof suite / sizeof suite[0]; k++) {
    fh_config *acfg = NULL;
    bench_model bm;
    int rc = arch_config(&acfg, suite[k].arch, "256,256");
    if (rc == 0)
      rc = bench_model_make(&bm, acfg, suite[k].c, suite[k].h, suite[k].w, 10,
                            o->batch ? atoi(o->batch) : suite[k].B, r);
    fh_config_free(acfg);
    FH_TRY(fh_error_agree(MPI_COMM_WORLD, rc));
    time_step(&bm, o->min_reps);
    double same_gf = 0.0;
    const double t_same = time_linear_gemms(bm.m, bm.B, r, o->min_reps, &same_gf);
    if (rank == 0) {
      print_step(&bm, sgemm_gf);
      if (t_same > 0)
        printf("    sgemm on the same shapes: %.3f ms, %.2f GFLOP/s; ratio step/same shapes "
               "%.3f\n",
               t_same * 1e3, same_gf, bm.flops / bm.t_step * 1e-9 / same_gf);
      if (strcmp(suite[k].arch, "cnn1") == 0)
        printf("    training cnn1 on one core: %.0f samples/s\n", bm.B / bm.t_step);
      if (suite[k].shares) print_layer_shares(&bm);
    }
    if (k == 0)
      *keep = bm;
    else
      bench_model_free(&bm);
  }
  return 0;
}

/* (2) and (3): reduction and broadcast of the payload of m against memcpy of
 * the same bytes, and one client's fixed-point contribution. */
static void bench_collectives(fh_model *m, int min_reps, int rank, int nranks) {
  const size_t n = fh_model_nparams(m);
  fh_accum acc;
  fh_accum_create(&acc, n, 32, 1);
  size_t acc_bytes = (n + 1) * sizeof(int64_t);
  void *cdst = fh_malloc(acc_bytes);
  copy_arg ca = {cdst, acc.sum, acc_bytes};
  double t_copy = time_it(do_copy, &ca, min_reps, 0.1);
  reduce_arg ra = {&acc, MPI_COMM_WORLD};
  double t_reduce = time_it_collective(do_reduce, &ra, min_reps, 0.1, MPI_COMM_WORLD);
  /* the same sums in the node's shared window (fh_accum_share, what a run uses when its ranks share a node) */
  fh_accum_share(&acc, MPI_COMM_WORLD);
  const int shared = acc.shm != NULL;
  double t_reduce_shm = shared ? time_it_collective(do_reduce, &ra, min_reps, 0.1, MPI_COMM_WORLD) : 0;
  allreduce_arg aa_all = {&acc, MPI_COMM_WORLD};
  double t_allreduce = time_it_collective(do_allreduce, &aa_all, min_reps, 0.1, MPI_COMM_WORLD);
  bcast_arg ba = {fh_model_params(m), n};
  double t_bcast = time_it_collective(do_bcast, &ba, min_reps, 0.1, MPI_COMM_WORLD);
  copy_arg cf = {cdst, fh_model_params(m), n * sizeof(float)};
  double t_copyf = time_it(do_copy, &cf, min_reps, 0.1);
  add_arg aa = {&acc, fh_model_params(m)};
  double t_add = time_it(do_add, &aa, min_reps, 0.1);
  if (rank == 0) {
    printf("  payload of %s: %zu parameters\n", fh_model_arch(m), n);
    double bw_red = acc_bytes / t_reduce * 1e-9, bw_copy = acc_bytes / t_copy * 1e-9;
    double bw_bc = n * 4.0 / t_bcast * 1e-9, bw_copyf = n * 4.0 / t_copyf * 1e-9;
    if (nranks > 1) {
      printf("  reduce int64 acc     %9.3f ms  %8.2f GB/s   (%zu bytes)\n", t_reduce * 1e3, bw_red, acc_bytes);
      printf("  memcpy same bytes    %9.3f ms  %8.2f GB/s\n", t_copy * 1e3, bw_copy);
      printf("  ratio reduce/memcpy  %9.3f\n", bw_red / bw_copy);
      if (shared) {
        const double bw_shm = acc_bytes / t_reduce_shm * 1e-9;
        printf("  reduce, shared window %8.3f ms  %8.2f GB/s   ratio to memcpy %.3f\n", t_reduce_shm * 1e3, bw_shm,
               bw_shm / bw_copy);
      }
      const double bw_all = acc_bytes / t_allreduce * 1e-9;
      printf("  allreduce int64 acc  %9.3f ms  %8.2f GB/s   ratio to memcpy %.3f (%s)\n", t_allreduce * 1e3, bw_all,
             bw_all / bw_copy, shared ? "shared window" : "messages");
      printf("  bcast float payload  %9.3f ms  %8.2f GB/s   (%zu bytes)\n", t_bcast * 1e3, bw_bc, n * 4);
      printf("  ratio bcast/memcpy   %9.3f\n", bw_bc / bw_copyf);
    } else {
      printf("  reduce, broadcast: 1 rank moves no data; run with 2 or more ranks\n");
    }
    printf("  fixed-point add      %9.3f ms  %8.2f GB/s of floats in; ratio to memcpy %.3f\n", t_add * 1e3,
           n * 4.0 / t_add * 1e-9, (n * 4.0 / t_add) / (n * 4.0 / t_copyf));
  }
  fh_accum_destroy(&acc);
  free(cdst);
}

int fh_cmd_bench(int argc, char **argv) {
  fh_config *cfg = NULL;
  bench_opts o;
  int rc = parse_args(argc, argv, &cfg, &o);
  if (rc == 0) rc = fh_model_conv_choice(cfg); /* --models builds its own configs */
  rc = fh_error_agree(MPI_COMM_WORLD, rc);
  if (rc) {
    fh_config_free(cfg);
    return rc;
  }
  int rank, nranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  fh_rng r;
  fh_rng_init(&r, 1, FH_RNG_TEST, 0, 0);
  const char *threads = getenv("OPENBLAS_NUM_THREADS");
  const double sgemm_gf = sgemm_rate(&r, o.min_reps);
  if (rank == 0)
    printf("fedhpc bench: %d ranks, OPENBLAS_NUM_THREADS=%s\n"
           "  cblas_sgemm 512x512x512: %.2f GFLOP/s (the reference of every ratio below)\n"
           "  convolutions: %s\n",
           nranks, threads ? threads : "unset", sgemm_gf, fh_conv_backend_name());
  if (o.models) {
    rc = bench_models(o.models, o.batches, o.hidden, o.steps, sgemm_gf, &r, rank);
    fh_config_free(cfg);
    return rc;
  }
  bench_model main_model; /* its payload is the one reduced and broadcast in (2) */
  if (o.has_deck)
    rc = bench_deck_model(&main_model, cfg, &o, sgemm_gf, &r, rank);
  else
    rc = bench_suite(&main_model, &o, sgemm_gf, &r, rank);
  if (rc == 0) {
    bench_collectives(main_model.m, o.min_reps, rank, nranks);
    bench_model_free(&main_model);
  }
  fh_config_free(cfg);
  return rc;
}
