/* Prototypes for BLACS, PBLAS, ScaLAPACK and the two LAPACK routines we call.
 * Debian's libscalapack-openmpi ships no C header, so we declare what we use.
 *
 * Conventions:
 * - Fortran and PBLAS routines take every argument by pointer; matrices are
 *   column-major; indices passed to them (ia, ja, ...) are 1-based.
 * - Fortran CHARACTER arguments carry a hidden length appended after the last
 *   argument. gfortran (>= 8) passes it as size_t; we declare it and pass 1 for
 *   every single-character argument. Omitting it happens to work on x86-64 until
 *   a Fortran callee is compiled with sibling-call optimisation and reuses the
 *   caller's stack slot, so we do not rely on that. The PBLAS routines (pdgemm,
 *   pdsyrk) are written in C and ignore the trailing lengths; passing them
 *   anyway is harmless under the System V calling convention.
 * - A descriptor is 9 ints (DLEN_ = 9), see FH_DESC_* below.
 * - This header assumes the default 32-bit integer (LP64) build, which is what
 *   Debian's ScaLAPACK and OpenBLAS are. */
#ifndef FH_SCALAPACK_H
#define FH_SCALAPACK_H

#include <stddef.h>
#include <mpi.h>

typedef size_t fh_fstrlen; /* gfortran's hidden CHARACTER length */

/* Descriptor entries (0-based positions of the Fortran DESC(1..9)). */
enum {
  FH_DESC_DTYPE = 0, /* 1: dense block-cyclic                   */
  FH_DESC_CTXT = 1,  /* BLACS context, -1 on ranks outside it   */
  FH_DESC_M = 2,
  FH_DESC_N = 3,
  FH_DESC_MB = 4,
  FH_DESC_NB = 5,
  FH_DESC_RSRC = 6, /* process row holding the first row block  */
  FH_DESC_CSRC = 7,
  FH_DESC_LLD = 8,  /* leading dimension of the local array     */
  FH_DESC_LEN = 9
};

/* ---- BLACS, C interface ------------------------------------------------------ */
void Cblacs_pinfo(int *mypnum, int *nprocs);
void Cblacs_get(int context, int what, int *val);
/* in: *context = a system handle; out: the new grid's context (-1 on processes
 * left out of the grid). order "R": process p sits at (p / npcol, p % npcol). */
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int context);
void Cblacs_barrier(int context, const char *scope);
/* not_done != 0: release BLACS's own buffers but leave MPI running. */
void Cblacs_exit(int not_done);
int Csys2blacs_handle(MPI_Comm comm);
MPI_Comm Cblacs2sys_handle(int blacs_handle);
void Cfree_blacs_system_handle(int blacs_handle);

/* ---- ScaLAPACK tools ---------------------------------------------------------- */
/* Rows (or columns) of an n-long dimension that process iproc holds. */
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc,
            const int *nprocs);
/* Local 1-based index -> global 1-based index. */
int indxl2g_(const int *indxloc, const int *nb, const int *iproc, const int *isrcproc,
             const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld,
               int *info);
void pdelset_(double *a, const int *ia, const int *ja, const int *desca,
              const double *alpha);
void pdelget_(const char *scope, const char *top, double *alpha, const double *a,
              const int *ia, const int *ja, const int *desca, fh_fstrlen scope_len,
              fh_fstrlen top_len);
void pdlaset_(const char *uplo, const int *m, const int *n, const double *alpha,
              const double *beta, double *a, const int *ia, const int *ja,
              const int *desca, fh_fstrlen uplo_len);
/* Copy a (sub)matrix between two distributions; ictxt must hold every process of
 * both descriptors' contexts. */
void pdgemr2d_(const int *m, const int *n, const double *a, const int *ia,
               const int *ja, const int *desca, double *b, const int *ib,
               const int *jb, const int *descb, const int *ictxt);
/* Copy the uplo triangle ("U", "L"; anything else: all) of sub(A) into sub(B). */
void pdlacpy_(const char *uplo, const int *m, const int *n, const double *a,
              const int *ia, const int *ja, const int *desca, double *b, const int *ib,
              const int *jb, const int *descb, fh_fstrlen uplo_len);
double pdlange_(const char *norm, const int *m, const int *n, const double *a,
                const int *ia, const int *ja, const int *desca, double *work,
                fh_fstrlen norm_len);

/* ---- PBLAS --------------------------------------------------------------------- */
void pdgemm_(const char *transa, const char *transb, const int *m, const int *n,
             const int *k, const double *alpha, const double *a, const int *ia,
             const int *ja, const int *desca, const double *b, const int *ib,
             const int *jb, const int *descb, const double *beta, double *c,
             const int *ic, const int *jc, const int *descc, fh_fstrlen transa_len,
             fh_fstrlen transb_len);
/* C := alpha * op(A) op(A)^T + beta * C on the uplo triangle of C [n, n];
 * trans "T": op(A) = A^T with A [k, n]. */
void pdsyrk_(const char *uplo, const char *trans, const int *n, const int *k,
             const double *alpha, const double *a, const int *ia, const int *ja,
             const int *desca, const double *beta, double *c, const int *ic,
             const int *jc, const int *descc, fh_fstrlen uplo_len, fh_fstrlen trans_len);
/* C [m, n] := beta * C + alpha * A^T, A [n, m]. */
void pdtran_(const int *m, const int *n, const double *alpha, const double *a,
             const int *ia, const int *ja, const int *desca, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc);

/* ---- ScaLAPACK drivers -------------------------------------------------------- */
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, int *info, fh_fstrlen uplo_len);
void pdpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a,
              const int *ia, const int *ja, const int *desca, double *b, const int *ib,
              const int *jb, const int *descb, int *info, fh_fstrlen uplo_len);
void pdposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *ia,
             const int *ja, const int *desca, double *b, const int *ib, const int *jb,
             const int *descb, int *info, fh_fstrlen uplo_len);
/* Symmetric eigensolvers; lwork = -1 (and liwork = -1) is a workspace query. */
void pdsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia,
             const int *ja, const int *desca, double *w, double *z, const int *iz,
             const int *jz, const int *descz, double *work, const int *lwork, int *info,
             fh_fstrlen jobz_len, fh_fstrlen uplo_len);
void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *w, double *z, const int *iz,
              const int *jz, const int *descz, double *work, const int *lwork,
              int *iwork, const int *liwork, int *info, fh_fstrlen jobz_len,
              fh_fstrlen uplo_len);

/* ---- LAPACK (one-rank fallback) ------------------------------------------------ */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
             fh_fstrlen uplo_len);
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a,
             const int *lda, double *b, const int *ldb, int *info, fh_fstrlen uplo_len);
/* Symmetric eigensolver (divide and conquer); lwork = liwork = -1 is a query. */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork,
             int *info, fh_fstrlen jobz_len, fh_fstrlen uplo_len);

#endif
