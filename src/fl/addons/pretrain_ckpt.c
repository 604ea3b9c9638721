/* The pretraining checkpoint's format (PM.ckpt.h5; see pretrain_ckpt.h). */
#include "fl/addons/pretrain_ckpt.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/h5util.h"

int fh_pretrain_ckpt_write(const char *path, const fh_pretrain_state *st) {
  char tmp[4400];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  hid_t f = fh_h5_mem_create(); /* written to disk whole by fh_h5_mem_commit */
  if (f < 0) return FH_FAIL(FH_ERR_RUNTIME, "%s: cannot create the pretraining checkpoint in memory", tmp);
  const hsize_t np = fh_model_nparams(st->m), nb = fh_model_nbuffers(st->m);
  int rc = fh_h5_write(f, "params", H5T_NATIVE_FLOAT, 1, &np, fh_model_params(st->m));
  if (rc == 0) rc = fh_h5_write(f, "momentum", H5T_NATIVE_FLOAT, 1, &np, st->momentum);
  if (rc == 0 && nb) rc = fh_h5_write(f, "buffers", H5T_NATIVE_FLOAT, 1, &nb, fh_model_buffers(st->m));
  if (rc == 0) rc = fh_h5_attr_int(f, "epoch", st->epoch);
  if (rc == 0) rc = fh_h5_attr_int(f, "steps", st->steps);
  if (rc == 0) rc = fh_h5_attr_str(f, "arch", fh_model_arch(st->m));
  if (rc == 0) {
    rc = fh_h5_mem_commit(f, tmp); /* its errors name tmp and the cause */
  } else {
    H5Fclose(f);
  }
  if (rc == 0 && rename(tmp, path) != 0)
    rc = FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  return rc;
}

static int read_vec(hid_t f, const char *path, const char *name, float *out, size_t n) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0) return FH_FAIL(FH_ERR_DATA, "%s: no dataset /%s; not a pretraining checkpoint", path, name);
  hid_t sp = H5Dget_space(d);
  hssize_t cnt = H5Sget_simple_extent_npoints(sp);
  int rc = 0;
  if (cnt != (hssize_t)n)
    rc = FH_FAIL(FH_ERR_DATA, "%s: /%s has %lld values, this deck's PM %zu; resume with the deck that wrote it",
                 path, name, (long long)cnt, n);
  else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read /%s", path, name);
  H5Sclose(sp);
  H5Dclose(d);
  return rc;
}

static int read_attr_ll(hid_t f, const char *path, const char *name, long long *v) {
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  if (a < 0) return FH_FAIL(FH_ERR_DATA, "%s: no attribute %s; not a pretraining checkpoint", path, name);
  int rc = H5Aread(a, H5T_NATIVE_LLONG, v) < 0 ? FH_FAIL(FH_ERR_DATA, "%s: cannot read %s", path, name) : 0;
  H5Aclose(a);
  return rc;
}

int fh_pretrain_ckpt_read(const char *path, fh_pretrain_state *st, MPI_Comm comm, int rank) {
  const size_t np = fh_model_nparams(st->m), nb = fh_model_nbuffers(st->m);
  long long ep = 0, steps = 0;
  int rc = 0;
  if (rank == 0) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
      rc = FH_FAIL(FH_ERR_USAGE, "%s: no pretraining checkpoint to resume from (pretrain.checkpoint_every writes "
                                 "one); run without --resume", path);
    } else {
      rc = read_vec(f, path, "params", fh_model_params(st->m), np);
      if (rc == 0) rc = read_vec(f, path, "momentum", st->momentum, np);
      if (rc == 0 && nb) rc = read_vec(f, path, "buffers", fh_model_buffers(st->m), nb);
      if (rc == 0) rc = read_attr_ll(f, path, "epoch", &ep);
      if (rc == 0) rc = read_attr_ll(f, path, "steps", &steps);
      H5Fclose(f);
    }
  }
  FH_TRY(fh_error_agree(comm, rc));
  MPI_Bcast(fh_model_params(st->m), (int)np, MPI_FLOAT, 0, comm);
  MPI_Bcast(st->momentum, (int)np, MPI_FLOAT, 0, comm);
  if (nb) MPI_Bcast(fh_model_buffers(st->m), (int)nb, MPI_FLOAT, 0, comm);
  MPI_Bcast(&ep, 1, MPI_LONG_LONG, 0, comm);
  MPI_Bcast(&steps, 1, MPI_LONG_LONG, 0, comm);
  st->epoch = (int)ep;
  st->steps = steps;
  return 0;
}
