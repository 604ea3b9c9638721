#include "io/profile_file.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/h5util.h"

void fh_profile_history_init(fh_profile_history *h, int expected_rounds, int nevents) {
  memset(h, 0, sizeof *h);
  h->cap = expected_rounds > 0 ? expected_rounds : 1;
  h->first_round = 1;
  h->nevents = nevents;
  h->time = fh_malloc((size_t)h->cap * FH_NPHASES * sizeof(double));
  h->flops = fh_malloc((size_t)h->cap * FH_NPHASES * sizeof(double));
  h->counts = nevents ? fh_malloc((size_t)h->cap * FH_NPHASES * nevents * sizeof(long long)) : NULL;
}

static void history_grow(fh_profile_history *h) {
  if (h->rounds == h->cap) {
    h->cap *= 2;
    h->time = realloc(h->time, (size_t)h->cap * FH_NPHASES * sizeof(double));
    h->flops = realloc(h->flops, (size_t)h->cap * FH_NPHASES * sizeof(double));
    if (h->nevents)
      h->counts = realloc(h->counts, (size_t)h->cap * FH_NPHASES * h->nevents * sizeof(long long));
    if (!h->time || !h->flops || (h->nevents && !h->counts)) fh_calloc((size_t)-1, 1); /* reports and aborts */
  }
}

void fh_profile_history_append(fh_profile_history *h, const double *time, const double *flops,
                               const long long *counts) {
  history_grow(h);
  memcpy(h->time + (size_t)h->rounds * FH_NPHASES, time, FH_NPHASES * sizeof(double));
  memcpy(h->flops + (size_t)h->rounds * FH_NPHASES, flops, FH_NPHASES * sizeof(double));
  if (h->nevents)
    memcpy(h->counts + (size_t)h->rounds * FH_NPHASES * h->nevents, counts,
           (size_t)FH_NPHASES * h->nevents * sizeof(long long));
  h->rounds++;
}

void fh_profile_history_push(fh_profile_history *h, const fh_profiler *p) {
  history_grow(h);
  memcpy(h->time + (size_t)h->rounds * FH_NPHASES, p->time, sizeof p->time);
  memcpy(h->flops + (size_t)h->rounds * FH_NPHASES, p->flops, sizeof p->flops);
  for (int ph = 0; ph < FH_NPHASES; ph++)
    for (int e = 0; e < h->nevents; e++)
      h->counts[((size_t)h->rounds * FH_NPHASES + ph) * h->nevents + e] = p->counts[ph][e];
  h->rounds++;
}

void fh_profile_history_free(fh_profile_history *h) {
  free(h->time);
  free(h->counts);
  free(h->flops);
  memset(h, 0, sizeof *h);
}

/* Writes one rank's column [rounds, 1, ...] of a dataset [rounds, nranks, ...]. */
static int write_rank_slab(hid_t d, int ndim, const hsize_t *dims, int rank, hid_t type, const void *buf) {
  hsize_t start[4] = {0, (hsize_t)rank, 0, 0}, count[4];
  for (int i = 0; i < ndim; i++) count[i] = dims[i];
  count[1] = 1;
  hid_t fsp = H5Dget_space(d);
  H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
  hid_t msp = H5Screate_simple(ndim, count, NULL);
  herr_t st = H5Dwrite(d, type, msp, fsp, H5P_DEFAULT, buf);
  H5Sclose(msp);
  H5Sclose(fsp);
  return st < 0 ? FH_FAIL(FH_ERR_OUTPUT, "cannot write profile data of rank %d", rank) : 0;
}

/* Long on purpose: both sides of one collective in one place (the other ranks
 * answer rank 0's request with their rows, rank 0 builds the file in memory
 * and writes each rank's rows as they arrive), so the matching sends,
 * receives and broadcasts are read together. */
int fh_profile_write(const char *run_dir, const fh_profile_history *h, const fh_profiler *p,
                     const char *status, MPI_Comm comm) {
  int rank, nranks;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  const int R = h->rounds, nev = h->nevents;
  const size_t ntime = (size_t)R * FH_NPHASES, ncount = (size_t)R * FH_NPHASES * nev;
  if (rank != 0) { /* answer rank 0's request so it never holds every rank at once */
    int go = 0;
    MPI_Bcast(&go, 1, MPI_INT, 0, comm);
    if (go) {
      MPI_Ssend(h->time, (int)ntime, MPI_DOUBLE, 0, 31, comm);
      MPI_Ssend(h->flops, (int)ntime, MPI_DOUBLE, 0, 33, comm);
      if (nev) MPI_Ssend(h->counts, (int)ncount, MPI_LONG_LONG, 0, 32, comm);
    }
    return 0;
  }
  int complete = strcmp(status, "complete") == 0;
  char final[4200], tmp[4200], partial[4200];
  snprintf(final, sizeof final, "%s/profile.h5", run_dir);
  snprintf(partial, sizeof partial, "%s/profile.h5.partial", run_dir);
  snprintf(tmp, sizeof tmp, "%s/profile.h5.tmp", run_dir);
  remove(final);
  remove(partial);
  hid_t f = fh_h5_mem_create(); /* written to disk whole by fh_h5_mem_commit */
  int go = f >= 0;
  MPI_Bcast(&go, 1, MPI_INT, 0, comm);
  if (!go) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create file; check that output.dir is writable and not full", tmp);

  char phases[256] = "", events[FH_MAX_EVENTS * 66] = "";
  for (int i = 0; i < FH_NPHASES; i++) {
    if (i) strcat(phases, ",");
    strcat(phases, fh_phase_names[i]);
  }
  for (int i = 0; i < p->nevents; i++) {
    if (i) strcat(events, ",");
    strcat(events, p->event_names[i]);
  }
  int rc = 0;
  if (rc == 0) rc = fh_h5_attr_str(f, "status", status);
  if (rc == 0) rc = fh_h5_attr_str(f, "phases", phases);
  if (rc == 0) rc = fh_h5_attr_str(f, "events", events);
  if (rc == 0) rc = fh_h5_attr_int(f, "nranks", nranks);
  if (rc == 0) rc = fh_h5_attr_int(f, "first_round", h->first_round);
  if (rc == 0) rc = fh_h5_attr_str(f, "timer", "MPI_Wtime");
  hsize_t tdims[3] = {(hsize_t)R, (hsize_t)nranks, FH_NPHASES};
  hsize_t cdims[4] = {(hsize_t)R, (hsize_t)nranks, FH_NPHASES, (hsize_t)nev};
  hid_t sp = H5Screate_simple(3, tdims, NULL);
  hid_t dt = H5Dcreate2(f, "time", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t df = H5Dcreate2(f, "flops", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(sp);
  hid_t dc = -1;
  if (nev) {
    sp = H5Screate_simple(4, cdims, NULL);
    dc = H5Dcreate2(f, "counters", H5T_NATIVE_LLONG, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
  }
  if (rc == 0 && (dt < 0 || df < 0 || (nev && dc < 0))) rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create datasets", tmp);
  double *tbuf = fh_malloc((ntime ? ntime : 1) * sizeof(double));
  double *fbuf = fh_malloc((ntime ? ntime : 1) * sizeof(double));
  long long *cbuf = nev ? fh_malloc((ncount ? ncount : 1) * sizeof(long long)) : NULL;
  for (int r = 0; r < nranks; r++) {
    const double *tsrc = h->time, *fsrc = h->flops;
    const long long *csrc = h->counts;
    if (r != 0) { /* every rank sends: the protocol does not depend on rc */
      MPI_Recv(tbuf, (int)ntime, MPI_DOUBLE, r, 31, comm, MPI_STATUS_IGNORE);
      MPI_Recv(fbuf, (int)ntime, MPI_DOUBLE, r, 33, comm, MPI_STATUS_IGNORE);
      if (nev) MPI_Recv(cbuf, (int)ncount, MPI_LONG_LONG, r, 32, comm, MPI_STATUS_IGNORE);
      tsrc = tbuf;
      fsrc = fbuf;
      csrc = cbuf;
    }
    if (rc == 0 && R > 0) rc = write_rank_slab(dt, 3, tdims, r, H5T_NATIVE_DOUBLE, tsrc);
    if (rc == 0 && R > 0) rc = write_rank_slab(df, 3, tdims, r, H5T_NATIVE_DOUBLE, fsrc);
    if (rc == 0 && R > 0 && nev) rc = write_rank_slab(dc, 4, cdims, r, H5T_NATIVE_LLONG, csrc);
  }
  free(tbuf);
  free(fbuf);
  free(cbuf);
  if (dt >= 0) H5Dclose(dt);
  if (df >= 0) H5Dclose(df);
  if (dc >= 0) H5Dclose(dc);
  if (rc != 0) {
    H5Fclose(f);
    return rc;
  }
  FH_TRY(fh_h5_mem_commit(f, tmp));
  if (rename(tmp, complete ? final : partial) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s", tmp, complete ? final : partial);
  return 0;
}
