/* AugFL's second-order server step over the whole model (fl/blocks/gn_head.h,
 * fh_gn_model_*) on the grid of all ranks against LAPACK on rank 0 solving
 * the same system built densely:
 *
 *   mpi_gn_model [samples [d [hidden [C [chunk]]]]]     (defaults 61 7 12 4 8)
 *
 * The model is an MLP d-hidden-C with weights from a fixed stream; sample s
 * (global index) is x_s ~ N(0, 1)^d from (seed, sample). Rank 0 forms the
 * Jacobian rows with the model's own backward (fh_model_backward from the
 * unit logit gradients after an evaluation-mode forward of x_s alone),
 * p = softmax(z), q = softmax(z / T), J with 2C rows per sample as gn_head.h
 * defines it, A = sigma I + lam J^T J and x = A^{-1} rhs by dpotrf/dpotrs.
 * The distributed solve runs twice: with the samples in near-equal blocks
 * over ranks, and all on the last rank. Each: max |x - x_lapack| /
 * max |x_lapack| < 1e-10. The unknowns span several blocks of the grid and
 * the chunk is small, so that the Jacobian takes several chunks and the
 * last one is padded. Exit 0 when every check passed. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/partition.h"
#include "fl/blocks/gn_head.h"
#include "fl/blocks/model_pass.h"
#include "linalg/grid.h"
#include "mpi_linalg_check.h"

#define TOL_VS_LAPACK 1e-10

static int S = 61, D = 7, HID = 12, C = 4, CHUNK = 8;
static const double T = 3.0;

static void sample(int s, float *x) {
  fh_rng r;
  fh_rng_init(&r, 42, FH_RNG_TEST, (uint32_t)s, 1);
  for (int j = 0; j < D; j++) x[j] = (float)fh_rng_normal(&r);
}

static void softmax(const float *z, double inv, double *p) {
  double mx = z[0] * inv, sum = 0;
  for (int c = 1; c < C; c++) mx = fmax(mx, z[c] * inv);
  for (int c = 0; c < C; c++) sum += (p[c] = exp(z[c] * inv - mx));
  for (int c = 0; c < C; c++) p[c] /= sum;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc > 1) S = atoi(argv[1]);
  if (argc > 2) D = atoi(argv[2]);
  if (argc > 3) HID = atoi(argv[3]);
  if (argc > 4) C = atoi(argv[4]);
  if (argc > 5) CHUNK = atoi(argv[5]);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  fh_model *m;
  if (fh_model_create_mlp(&m, D, &HID, 1, C, 4) != 0) {
    fprintf(stderr, "model: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  fh_rng init;
  fh_rng_init(&init, 7, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &init);
  const int n = (int)fh_model_nparams(m);
  const double cp = sqrt(0.7 / S), cq = sqrt(1.3 / S), sigma = 2.8, lam = 5.0;

  /* the reference on rank 0, from the model's own backward */
  double *x_ref = NULL, *rhs0 = NULL;
  if (rank == 0) {
    const int rows = 2 * C * S;
    double *J = fh_calloc((size_t)rows * n, sizeof(double)); /* column-major [rows, n] */
    float *x = fh_malloc((size_t)D * sizeof(float)), *e = fh_malloc((size_t)C * sizeof(float));
    float *jz = fh_malloc((size_t)C * n * sizeof(float));
    double *pq = fh_malloc((size_t)2 * C * sizeof(double));
    for (int s = 0; s < S; s++) {
      sample(s, x);
      const float *z = fh_model_forward(m, x, 1, 0);
      softmax(z, 1.0, pq);
      softmax(z, 1.0 / T, pq + C);
      for (int c = 0; c < C; c++) {
        memset(e, 0, (size_t)C * sizeof(float));
        e[c] = 1.0f;
        fh_model_forward(m, x, 1, 0);
        fh_model_backward(m, x, e, 1);
        memcpy(jz + (size_t)c * n, fh_model_grads(m), (size_t)n * sizeof(float));
      }
      for (int t = 0; t < 2 * C; t++) {
        const double *pr = pq + (t < C ? 0 : C);
        const int k = t % C;
        const double sc = (t < C ? cp : cq) * sqrt(pr[k]);
        const int i = s * 2 * C + t;
        for (int j = 0; j < n; j++) {
          double v = 0;
          for (int c = 0; c < C; c++) v += sc * ((c == k) - pr[c]) * jz[(size_t)c * n + j];
          J[i + (size_t)j * rows] = v;
        }
      }
    }
    double *A = fh_calloc((size_t)n * n, sizeof(double));
    cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, n, rows, lam, J, rows, 0.0, A, n);
    for (int i = 0; i < n; i++) A[i + (size_t)i * n] += sigma;
    rhs0 = fh_malloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) rhs0[i] = sin(0.37 * (i + 1));
    x_ref = fh_malloc((size_t)n * sizeof(double));
    if (check_lapack_solve(n, 1, A, n, rhs0, n, x_ref) != 0) {
      fprintf(stderr, "reference: LAPACK failed\n");
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    free(J), free(A), free(x), free(e), free(jz), free(pq);
  }

  fh_model_pass *pass;
  fh_gn_head *g = NULL;
  if (fh_model_pass_create(&pass, m, 4) != 0 || fh_gn_model_create(&g, MPI_COMM_WORLD, pass, n, D, C, T, CHUNK) != 0) {
    fprintf(stderr, "gn_model_create: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int ok = fh_gn_head_size(g) == n;
  for (int layout = 0; layout < 2; layout++) {
    int64_t b, e;
    if (layout == 0) fh_block_range(S, size, rank, &b, &e);
    else b = rank == size - 1 ? 0 : S, e = S;
    const int mine = (int)(e - b);
    float *xs = fh_malloc((size_t)(mine ? mine : 1) * D * sizeof(float));
    for (int s = 0; s < mine; s++) sample((int)b + s, xs + (size_t)s * D);
    double *x = fh_malloc((size_t)n * sizeof(double));
    if (rank == 0) memcpy(x, rhs0, (size_t)n * sizeof(double));
    int rc = fh_gn_model_solve(g, mine, xs, cp, cq, sigma, lam, x);
    if (rank == 0) {
      double err = rc == 0 ? check_max_rel_diff(n, 1, x, n, x_ref, n) : INFINITY;
      int pass_ = rc == 0 && err < TOL_VS_LAPACK;
      printf("  %d ranks, samples %s: MLP %d-%d-%d, %d unknowns, max rel diff vs LAPACK %.2e (< %.0e): %s\n", size,
             layout == 0 ? "in blocks" : "on the last rank", D, HID, C, n, err, TOL_VS_LAPACK, pass_ ? "ok" : "FAILED");
      if (rc) printf("  error: %s\n", fh_error_msg());
      ok &= pass_;
    }
    free(xs);
    free(x);
  }
  fh_gn_head_free(g);
  fh_model_pass_free(pass);
  fh_model_free(m);
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  free(x_ref);
  free(rhs0);
  fh_linalg_finalize();
  MPI_Finalize();
  return ok ? 0 : 1;
}
