/* fedhpc bench: speed against the machine's own limits, measured in the same
 * run. (1) The model's training step (forward + loss + backward + SGD) in
 * GFLOP/s against cblas_sgemm running exactly the GEMMs of that step (same
 * shapes, same transposes); (2) the round's reduction (MPI_Reduce of the int64
 * fixed-point accumulator) and the payload broadcast against memcpy of the same
 * bytes; (3) the fixed-point accumulation of one client's contribution against
 * memcpy. Ratios near 1 mean the code runs at the limit of the machine. */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "fl/accumulate.h"
#include "nn/model.h"
#include "nn/optim.h"

static double now(void) { return MPI_Wtime(); }

/* Repeats fn until at least min_s seconds passed (and at least min_reps times);
 * returns seconds per call, best of 3 such trials. */
typedef void (*bench_fn)(void *);
static double time_it(bench_fn fn, void *arg, int min_reps, double min_s) {
  double best = 1e30;
  for (int trial = 0; trial < 3; trial++) {
    fn(arg);
    int reps = 0;
    double t0 = now(), t;
    do {
      fn(arg);
      reps++;
      t = now() - t0;
    } while (reps < min_reps || t < min_s);
    if (t / reps < best) best = t / reps;
  }
  return best;
}

/* The same for collective calls: every rank must make the same number of calls,
 * so the repetition count doubles until the slowest rank saw min_s seconds. */
static double time_it_collective(bench_fn fn, void *arg, int min_reps, double min_s, MPI_Comm comm) {
  fn(arg);
  int reps = min_reps;
  double best = 1e30;
  for (int trial = 0; trial < 3;) {
    MPI_Barrier(comm);
    double t0 = now();
    for (int i = 0; i < reps; i++) fn(arg);
    double t = now() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (t < min_s && reps < (1 << 24)) {
      reps *= 2;
      continue;
    }
    if (t / reps < best) best = t / reps;
    trial++;
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

int fh_cmd_bench(int argc, char **argv) {
  static const char *const opts[] = {"--batch", "--reps", NULL};
  const char *vals[2] = {NULL, NULL};
  fh_config *cfg = NULL;
  /* Without a deck the benchmark model is an MLP 784-256-256-10. */
  int has_deck = 0;
  for (int i = 0; i < argc; i++) {
    if (argv[i][0] == '-') {
      if (strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--batch") == 0 ||
          strcmp(argv[i], "--reps") == 0)
        i++;
      continue;
    }
    has_deck = 1;
  }
  int nargs = argc;
  char **args = fh_calloc((size_t)argc + 8, sizeof(char *));
  if (!has_deck) {
    args[nargs - argc] = "--set";
    args[nargs - argc + 1] = "model.hidden=256,256";
    nargs += 2;
  }
  memcpy(args + (nargs - argc), argv, (size_t)argc * sizeof(char *));
  int rc = fh_load_config_from_args(nargs, args, 0, &cfg, opts, vals);
  free(args);
  FH_TRY(rc);
  int B = vals[0] ? atoi(vals[0]) : 64;
  int min_reps = vals[1] ? atoi(vals[1]) : 20;
  if (B < 1 || min_reps < 1) return FH_FAIL(FH_ERR_USAGE, "--batch and --reps must be positive");

  int rank, nranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  const int d = 784, C = 10;
  fh_model *m = NULL;
  rc = fh_model_create(&m, cfg, d, 1, 1, C, B);
  FH_TRY(fh_error_agree(MPI_COMM_WORLD, rc));
  fh_rng r;
  fh_rng_init(&r, 1, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &r);
  size_t n = fh_model_nparams(m);

  float *x = fh_malloc((size_t)B * d * sizeof(float));
  int32_t *y = fh_malloc((size_t)B * sizeof(int32_t));
  fh_rng_normal_fill(&r, x, (size_t)B * d, 0.f, 1.f);
  for (int i = 0; i < B; i++) y[i] = (int32_t)fh_rng_below(&r, C);

  /* (1) training step vs sgemm on the same shapes */
  step_arg sa = {m, x, y, B, {0.01f, 0.9f, 0.f, 1e-4f, 0}, fh_calloc(n, sizeof(float)), 0};
  double t_step = time_it(do_step, &sa, min_reps, 0.2);
  double flops = fh_model_flops_forward(m, B) + fh_model_flops_backward(m, B);

  gemm_arg ga = {.B = B};
  size_t maxw = 0, maxio = 0;
  double gemm_flops = 0;
  for (int i = 0; i < fh_model_nviews(m) && ga.nl < 64; i++) {
    const fh_param_view *v = fh_model_view(m, i);
    if (v->ndim != 2) continue;
    int out = v->shape[0], in = v->shape[1];
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
  fh_rng_normal_fill(&r, ga.X, maxio, 0.f, 1.f);
  fh_rng_normal_fill(&r, ga.W, maxw, 0.f, 0.05f);
  double t_gemm = time_it(do_gemms, &ga, min_reps, 0.2);

  /* (2) reduction and broadcast of the payload vs memcpy of the same bytes */
  fh_accum acc;
  fh_accum_create(&acc, n, 32, 1);
  size_t acc_bytes = (n + 1) * sizeof(int64_t);
  void *cdst = fh_malloc(acc_bytes);
  copy_arg ca = {cdst, acc.sum, acc_bytes};
  double t_copy = time_it(do_copy, &ca, min_reps, 0.1);
  reduce_arg ra = {&acc, MPI_COMM_WORLD};
  double t_reduce = time_it_collective(do_reduce, &ra, min_reps, 0.1, MPI_COMM_WORLD);
  bcast_arg ba = {fh_model_params(m), n};
  double t_bcast = time_it_collective(do_bcast, &ba, min_reps, 0.1, MPI_COMM_WORLD);
  copy_arg cf = {cdst, fh_model_params(m), n * sizeof(float)};
  double t_copyf = time_it(do_copy, &cf, min_reps, 0.1);

  /* (3) one client's fixed-point contribution vs memcpy of its floats */
  add_arg aa = {&acc, fh_model_params(m)};
  double t_add = time_it(do_add, &aa, min_reps, 0.1);

  if (rank == 0) {
    double step_gf = flops / t_step * 1e-9, gemm_gf = gemm_flops / t_gemm * 1e-9;
    printf("fedhpc bench: model %s (%zu parameters), batch %d, %d ranks, OPENBLAS_NUM_THREADS=%s\n",
           fh_model_arch(m), n, B, nranks, getenv("OPENBLAS_NUM_THREADS") ? getenv("OPENBLAS_NUM_THREADS") : "unset");
    printf("  training step        %9.3f ms  %8.2f GFLOP/s\n", t_step * 1e3, step_gf);
    printf("  sgemm, same shapes   %9.3f ms  %8.2f GFLOP/s\n", t_gemm * 1e3, gemm_gf);
    printf("  ratio step/sgemm     %9.3f\n", step_gf / gemm_gf);
    double bw_red = acc_bytes / t_reduce * 1e-9, bw_copy = acc_bytes / t_copy * 1e-9;
    double bw_bc = n * 4.0 / t_bcast * 1e-9, bw_copyf = n * 4.0 / t_copyf * 1e-9;
    if (nranks > 1) {
      printf("  reduce int64 acc     %9.3f ms  %8.2f GB/s   (%zu bytes)\n", t_reduce * 1e3, bw_red, acc_bytes);
      printf("  memcpy same bytes    %9.3f ms  %8.2f GB/s\n", t_copy * 1e3, bw_copy);
      printf("  ratio reduce/memcpy  %9.3f\n", bw_red / bw_copy);
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
  free(ga.X);
  free(ga.Y);
  free(ga.W);
  free(ga.dW);
  free(sa.mom);
  free(x);
  free(y);
  fh_model_free(m);
  fh_config_free(cfg);
  return 0;
}
