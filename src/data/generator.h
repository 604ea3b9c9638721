/* A class-conditional generative model of samples, learned from data: a
 * Gaussian mixture per class in a PCA space (FedGC's generator, fitted at the
 * server on its held-out rows; docs/fedgc.md).
 *
 * Fit (fh_generator_fit, collective over the ranks that hold the rows):
 *   mean mu and covariance S = (1/N) sum (x - mu)(x - mu)^T of all rows, each
 *     part's sums in double, added over parts and ranks in fixed point (exact
 *     and order-free, so S is the same bits on any rank count);
 *   S = Z diag(w) Z^T on the BLACS grid of all ranks (linalg/eig.h: ScaLAPACK
 *     pdsyevd, LAPACK dsyevd on one rank); the q leading eigenvectors, by
 *     decreasing eigenvalue, gathered to rank 0, each with the sign that makes
 *     its largest entry positive, rounded to multiples of 2^-16 and
 *     re-orthonormalised (Gram-Schmidt): the basis V [q, d]. The rounding
 *     absorbs the grid-dependent last bits of the eigensolver, so V, and all
 *     that follows, is the same on any rank count unless an entry falls within
 *     about 1e-13 of a rounding boundary or the q-th and (q+1)-th eigenvalues
 *     nearly coincide;
 *   codes z = V (x - mu) of every row, gathered to rank 0 in row order; per
 *     class c an EM fit of a K-component Gaussian mixture with full (or
 *     diagonal) covariances in the q-dim code space (k-means++ seeding from the stream
 *     (seed, FH_RNG_GENERATE, none, c), a fixed number of EM iterations,
 *     variances floored at var_floor times the class's own variance);
 *     broadcast to every rank.
 *
 * Sampling (fh_generator_sample) is a pure function of the model, the
 * options and the caller's stream; see the options for the three prompt
 * designs and the three guidance modes. Generated samples lie in the affine
 * PCA subspace mu + span(V). */
#ifndef FH_GENERATOR_H
#define FH_GENERATOR_H

#include <mpi.h>
#include <stdint.h>

#include "core/rng.h"
#include "data/dataset.h"

typedef struct {
  int d, q, C, K;   /* input dim, PCA dim, classes, components per class   */
  double *mean;     /* [d]                                                 */
  double *basis;    /* [q, d] row j: direction j, by decreasing variance    */
  double *code_var; /* [q] variance of the fitted rows' codes per direction */
  int *ncomp;       /* [C] components of class c (<= K; 0: no rows of c)    */
  double *weight;   /* [C, K] mixing weights (sum 1 over the ncomp used)    */
  double *mu;       /* [C, K, q] component means                           */
  double *cov;      /* [C, K, q, q] component covariances (row-major)       */
  double *chol;     /* [C, K, q, q] their lower Cholesky factors            */
  double *class_freq; /* [C] share of the fitted rows in each class        */
  double explained; /* share of the total variance the q directions keep   */
  double eig_seconds; /* wall time of the eigendecomposition (rank 0)      */
  int nprow, npcol; /* the grid it ran on                                  */
} fh_generator;

typedef struct {
  int q, K;          /* PCA dimensions, components per class               */
  int em_iters;      /* EM iterations per class                            */
  double var_floor;  /* variance floor, relative to the class's variance   */
  int full;          /* 1: full covariances; 0: diagonal                   */
  uint64_t seed;     /* k-means++ seeding stream                           */
} fh_generator_params;

/* Collective over comm. This rank's rows x [n, d] (floats), labels y [n] in
 * [0, C), cut into nparts parts: part j holds local rows [part_end[j-1],
 * part_end[j]) (part_end[-1] = 0). The parts of ranks 0, 1, .. in that order
 * are all rows' parts, in row order; a part's sums do not depend on where it
 * lives, so the fit does not depend on the rank count. Errors (agreed over
 * comm): FH_ERR_CONFIG when q > d or q > the rows, FH_ERR_DATA when a class
 * has no row, FH_ERR_RUNTIME from the eigensolver. */
int fh_generator_fit(fh_generator *g, MPI_Comm comm, int d, int C, const float *x, const int32_t *y, int n,
                     const int *part_end, int nparts, const fh_generator_params *p);
void fh_generator_free(fh_generator *g);

/* EM fit of a K-component Gaussian mixture to z [n, q] (double), with full
 * (full = 1) or diagonal covariances, seeded by k-means++ from r: w [K], mu
 * [K, q], cov [K, q, q] (row-major; diagonal ones hold zeros off the
 * diagonal). Returns the components used, min(K, n) (>= 1 when n >= 1; 0 when
 * n = 0). Variances are floored at var_floor times the data's own
 * per-dimension variance (or 1e-12 where that is 0). */
int fh_gmm_fit(const double *z, int n, int q, int K, int iters, double var_floor, int full, fh_rng *r, double *w,
               double *mu, double *cov);

/* Prompt design: which component and temperature each sample comes from. */
enum { FH_GEN_SINGLE = 0, /* the class's heaviest component, temperature 1     */
       FH_GEN_MULTI,      /* a component drawn by the mixing weights, temp. 1  */
       FH_GEN_DIVERSE };  /* a component drawn uniformly, temperature uniform in [tmin, tmax] */
/* Guidance: where a sample's code comes from. */
enum { FH_GEN_PROMPT = 0, /* z_p: the class model alone                         */
       FH_GEN_REAL,       /* z_r = V (anchor - mu) + noise: the anchor's variation, its label */
       FH_GEN_MIXED };    /* (1 - s) z_r + s z_p, labelled with the class: s = 0 is z_r, s = 1 is z_p */

typedef struct {
  int design, guidance;
  double tmin, tmax; /* diverse temperatures                                 */
  double strength;   /* s of mixed guidance, in [0, 1]                        */
  double noise;      /* z_r's noise: std noise * sqrt(code_var[j]) along j    */
} fh_gen_options;

/* Draws exactly 2 + 2q numbers from r per sample, in the same order for every
 * design and guidance (component, temperature, q normals of z_p, q normals of
 * the noise), so designs and guidance modes differ only in how they combine
 * the same draws. One sample of class c into x [d]: x = mu + V^T z. anchor
 * [d] is the client's own sample the real and mixed modes start from (NULL:
 * none; they then take z_p) with label anchor_y; *y gets the label: c, or
 * anchor_y for real guidance. zbuf: scratch [3q + d]. c must have ncomp > 0. */
void fh_generator_sample(const fh_generator *g, const fh_gen_options *o, int c, const float *anchor,
                         int32_t anchor_y, fh_rng *r, double *zbuf, float *x, int32_t *y);

#endif

/* ---- an external pool of generated samples (fedgc.pool) ------------------------ */

/* Reads the pool file at path (docs/dataset-format.md, "Generated pool"):
 * /x [N, ...] numeric with the sample shape of ds (or flat [N, dim]), /y [N]
 * integer labels in [0, ds->num_classes). Every rank reads all of it; x comes
 * back normalised like ds's samples: (x / value_scale - mean[ch]) / std[ch].
 * *x [n, dim] and *y [n] are the caller's to free. FH_ERR_DATA naming the file
 * and what is wrong. */
/* nhwc: /x is [N, H, W, C] (channels last, as numpy image arrays often are),
 * transposed to the data set's C x H x W; else [N, D], [N, C, H, W] or, for
 * one channel, [N, H, W]. A layout that does not match is refused. */
int fh_generator_pool_load(const char *path, const fh_dataset *ds, int nhwc, float **x, int32_t **y, int64_t *n);

/* Routes of a pool's rows (docs/dataset-format.md, "Generated pool"): none;
 * /client [N] (row i only for client id[i]); or /domain [N] (row i only for
 * the clients whose data-side domain is id[i]). */
enum { FH_POOL_ROUTE_NONE = 0, FH_POOL_ROUTE_CLIENT, FH_POOL_ROUTE_DOMAIN };
typedef struct {
  int kind;    /* FH_POOL_ROUTE_*                   */
  int32_t *id; /* [n]: a client or a domain per row; NULL for none */
} fh_pool_routes;

/* Reads the optional /client or /domain of the pool at path, which holds n
 * rows: one-dimensional integer datasets of n values >= 0; both at once, a
 * wrong length or a negative value is FH_ERR_DATA naming the file and the
 * dataset. The values are checked against the run's clients by the caller
 * (fl/addons/fedgc.c). rt->id is the caller's to free. */
int fh_generator_pool_routes(const char *path, int64_t n, fh_pool_routes *rt);

/* The data-side domain of each of K clients: data file data_path's
 * /train/client_domain [K] (integers >= 0), *dom [K] the caller's to free.
 * FH_ERR_DATA naming the file and dataset when it is missing, of another
 * length or negative. */
int fh_pool_client_domains(const char *data_path, int K, int32_t **dom);
