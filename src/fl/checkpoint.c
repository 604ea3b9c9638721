/* RUN/checkpoint.h5: written and read back by every rank through parallel HDF5
 * (MPI-IO driver); interface and guarantees in checkpoint.h, layout in
 * docs/outputs.md.
 *
 * Writing: the file is created collectively as checkpoint.h5.tmp; every
 * dataset and attribute is created by all ranks with the same arguments (HDF5
 * metadata is collective: read by one rank and broadcast, written together).
 * Client-state rows go in independent writes, each rank its own contiguous
 * block of rows, in batches that fit checkpoint.buffer_mib (ranks with fewer
 * batches join the later calls with empty selections). Rank 0 alone writes
 * what only it holds (the global payload, server vectors, metrics rows) with
 * independent writes. A collective flush (MPI_File_sync: the MPI-IO driver
 * does not sync at close) and the collective close follow; then rank 0 fsyncs
 * the file, renames it to checkpoint.h5 and fsyncs the folder.
 *
 * Errors: a rank that fails locally (its rows, rank 0's own writes) keeps the
 * first error and goes on making every collective call the others make, so
 * that no rank waits in a call another has left; the ranks agree on the
 * outcome once, after the close. Datasets that every collective transfer needs
 * are agreed on first (one MPI_Allreduce), so a transfer is skipped everywhere
 * or made everywhere.
 *
 * Reading mirrors it: every rank opens the same objects in the same order,
 * rank 0 reads what only it needs (metrics rows) or what it then broadcasts
 * (global payload, server vectors), and each rank reads its client-state rows
 * in collective reads.
 *
 * Datasets are contiguous with no fill: nothing is written twice. */
#define _GNU_SOURCE /* fallocate */
#include "fl/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/paths.h"
#include "fl/addon.h"
#include "io/h5util.h"

const fh_key_spec fh_checkpoint_keys[] = {
    {"checkpoint.every", FH_T_INT, "0", 0, 1e8, NULL,
     "write RUN/checkpoint.h5 every N rounds; 0 = only when SIGTERM/SIGUSR1 stops the run"},
    {"checkpoint.buffer_mib", FH_T_INT, "64", 1, 1 << 20, NULL,
     "memory per rank for client-state rows in one collective write or read (MiB)"},
    FH_KEYS_END};

#define CK_FORMAT "fedhpc checkpoint"
#define CK_FORMAT_VERSION 2 /* 2: checksums */

/* ---- small HDF5 pieces ------------------------------------------------------- */

static const char *type_name(fh_state_type t) {
  switch (t) {
    case FH_STATE_F32: return "f32";
    case FH_STATE_F16: return "f16";
    case FH_STATE_F64: return "f64";
    case FH_STATE_I32: return "i32";
  }
  return "?";
}

/* Keeps a rank's first error; the calls after it are made all the same. */
static void keep(int *rc, int r) {
  if (*rc == 0 && r != 0) *rc = r;
}

/* MPI-IO file access, with collective metadata reads and writes: one rank
 * reads the file's metadata and broadcasts it (not every rank hitting the file
 * system), and metadata is written by the ranks together. Every metadata call
 * (opening, creating, attributes) is then collective. */
static hid_t mpio_fapl(MPI_Comm comm) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Pset_all_coll_metadata_ops(fapl, 1);
  H5Pset_coll_metadata_write(fapl, 1);
  return fapl;
}

/* Collective, after a parallel create or open: the ranks agree on it first.
 * Opened nowhere: the agreed error. Opened on some ranks only: those cannot
 * close their file (H5Fclose is collective over ranks that have none), so the
 * run stops here, after rank 0 has printed the message. */
static int agree_open(MPI_Comm comm, hid_t f, int local_rc) {
  int have = f >= 0, nhave = 0, P = 1;
  MPI_Comm_size(comm, &P);
  MPI_Allreduce(&have, &nhave, 1, MPI_INT, MPI_SUM, comm);
  int rc = fh_error_agree(comm, local_rc);
  if (nhave == 0 || nhave == P) return rc;
  fh_report_error();
  MPI_Abort(comm, rc ? rc : FH_ERR_RUNTIME);
  return rc;
}

/* Rank 0's buffer to every rank, in chunks (MPI counts are int). */
static void bcast_bytes(void *buf, size_t bytes, MPI_Comm comm) {
  const size_t chunk = (size_t)1 << 30;
  for (size_t off = 0; off < bytes; off += chunk)
    MPI_Bcast((char *)buf + off, (int)(bytes - off < chunk ? bytes - off : chunk), MPI_BYTE, 0, comm);
}

/* Client-state rows per collective transfer: as many as fit buffer_bytes, at
 * least 1, at most nlocal (computed in size_t: no int overflow). */
static int batch_rows(size_t buffer_bytes, size_t row_bytes, int nlocal) {
  size_t b = row_bytes > 0 ? buffer_bytes / row_bytes : 1;
  if (b < 1) b = 1;
  if (nlocal > 0 && b > (size_t)nlocal) b = (size_t)nlocal;
  if (nlocal <= 0) b = 1;
  return (int)b;
}

/* Test hook (documented in checkpoint.h): this rank's client-state rows fail. */
static int rows_fail_here(int rank) {
  const char *v = getenv("FEDHPC_TEST_FAIL_IN_CHECKPOINT");
  return v && v[0] && atoi(v) == rank;
}

static hid_t create_ds(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims) {
  hid_t sp = H5Screate_simple(ndim, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  hid_t d = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(sp);
  return d;
}

/* Collective transfer of rows [row0, row0+count) (all columns) of a 1-D or 2-D
 * dataset; count 0 joins the call with an empty selection. */
static herr_t rows_xfer(hid_t d, hid_t type, hsize_t row0, hsize_t count, void *buf, hid_t dxpl, int write) {
  hid_t fsp = H5Dget_space(d);
  int nd = H5Sget_simple_extent_ndims(fsp);
  hsize_t dims[2] = {0, 1};
  H5Sget_simple_extent_dims(fsp, dims, NULL);
  hsize_t start[2] = {row0, 0}, cnt[2] = {count, dims[1]}, one = 1;
  hid_t msp;
  if (count == 0) {
    H5Sselect_none(fsp);
    msp = H5Screate_simple(1, &one, NULL);
    H5Sselect_none(msp);
  } else {
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL);
    msp = H5Screate_simple(nd, cnt, NULL);
  }
  herr_t st = write ? H5Dwrite(d, type, msp, fsp, dxpl, buf) : H5Dread(d, type, msp, fsp, dxpl, buf);
  H5Sclose(msp);
  H5Sclose(fsp);
  return st;
}

/* Collective transfer of this rank's slab [0..R) x {rank} x ... of a profile
 * dataset [R, P, FH_NPHASES(, E)]. */
static herr_t profile_xfer(hid_t d, hid_t type, int rank, void *buf, hid_t dxpl, int write) {
  hid_t fsp = H5Dget_space(d);
  int nd = H5Sget_simple_extent_ndims(fsp);
  hsize_t dims[4] = {0}, start[4] = {0, (hsize_t)rank, 0, 0}, cnt[4], one = 1;
  H5Sget_simple_extent_dims(fsp, dims, NULL);
  for (int i = 0; i < nd; i++) cnt[i] = dims[i];
  cnt[1] = 1;
  hid_t msp;
  if (dims[0] == 0 || (hsize_t)rank >= dims[1]) {
    H5Sselect_none(fsp);
    msp = H5Screate_simple(1, &one, NULL);
    H5Sselect_none(msp);
  } else {
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL);
    msp = H5Screate_simple(nd, cnt, NULL);
  }
  herr_t st = write ? H5Dwrite(d, type, msp, fsp, dxpl, buf) : H5Dread(d, type, msp, fsp, dxpl, buf);
  H5Sclose(msp);
  H5Sclose(fsp);
  return st;
}

/* A fixed-length string attribute, malloc'ed; NULL when missing. */
static char *attr_str_read(hid_t obj, const char *name) {
  if (H5Aexists(obj, name) <= 0) return NULL;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return NULL;
  hid_t t = H5Aget_type(a);
  size_t sz = H5Tget_size(t);
  char *buf = fh_calloc(sz + 1, 1);
  if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0 || H5Aread(a, t, buf) < 0) {
    free(buf);
    buf = NULL;
  }
  H5Tclose(t);
  H5Aclose(a);
  return buf;
}

/* ---- checksums ------------------------------------------------------------------ */

/* A dataset's checksum (attribute "checksum", with "checksum_row_bytes"): the
 * sum, modulo 2^64, of a 64-bit FNV-1a hash of every row (first-axis entry)
 * seeded by its row index; a dataset written whole by one rank is one row
 * (checksum_row_bytes = 0). A sum over rows is the same whichever ranks hash
 * which rows, so a checkpoint written on P ranks is verified on any number. */
uint64_t fh_checkpoint_row_hash(const void *row, size_t bytes, uint64_t index) {
  uint64_t h = 14695981039346656037ull ^ (index * 0x9E3779B97F4A7C15ull);
  const unsigned char *p = row;
  for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static uint64_t rows_hash(const void *buf, size_t row_bytes, uint64_t first, size_t count) {
  uint64_t s = 0;
  for (size_t r = 0; r < count; r++) s += fh_checkpoint_row_hash((const char *)buf + r * row_bytes, row_bytes, first + r);
  return s;
}

/* Collective: the agreed sum of every rank's part, written as d's attributes. */
static int put_checksum(hid_t d, uint64_t mine, size_t row_bytes, MPI_Comm comm) {
  uint64_t all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_UINT64_T, MPI_SUM, comm);
  if (d < 0) return 0;
  int rc = fh_h5_attr_int(d, "checksum", (long long)all);
  if (rc == 0) rc = fh_h5_attr_int(d, "checksum_row_bytes", (long long)row_bytes);
  return rc;
}

/* ---- writing ------------------------------------------------------------------ */

static int ck_errno; /* errno at this rank's first failure */

static void keep_w(int *rc, int r) {
  if (*rc == 0 && r != 0) {
    *rc = r;
    ck_errno = errno;
  }
}

static int sync_and_rename(const char *tmp, const char *path, const char *run_dir) {
  int fd = open(tmp, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot sync the checkpoint to disk: %s", tmp, strerror(e));
  }
  close(fd);
  if (rename(tmp, path) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  fd = open(run_dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) { /* the rename itself reaches the disk */
    fsync(fd);
    close(fd);
  }
  return 0;
}

/* Client-state rows of clients first..first+count-1 to a buffer and back; a
 * failure is this rank's alone (the caller goes on with the collectives). */
static int get_rows(fh_run *run, int k, int first, int count, void *buf, uint8_t *init) {
  if (rows_fail_here(run->rank))
    return FH_FAIL(FH_ERR_OUTPUT, "checkpoint: rank %d cannot get its rows of client-state field '%s' "
                                  "(FEDHPC_TEST_FAIL_IN_CHECKPOINT)", run->rank, fh_client_store_field_name(run->state, k));
  return fh_client_store_get_rows(run->state, k, first, count, buf, init);
}

static int put_rows(fh_run *run, int k, int first, int count, const void *buf, const uint8_t *init) {
  if (rows_fail_here(run->rank))
    return FH_FAIL(FH_ERR_DATA, "checkpoint: rank %d cannot put its rows of client-state field '%s' "
                                "(FEDHPC_TEST_FAIL_IN_CHECKPOINT)", run->rank, fh_client_store_field_name(run->state, k));
  return fh_client_store_put_rows(run->state, k, first, count, buf, init);
}

/* Collective: writes one client-state field, values [K, n] and initialised
 * [K], with their checksums. Every rank makes the same HDF5 and MPI calls
 * whatever fails locally. */
static int write_field(fh_run *run, hid_t g, int k, size_t buffer_bytes, hid_t coll, const char *tmp) {
  fh_client_store *s = run->state;
  const char *name = fh_client_store_field_name(s, k);
  fh_state_type type = fh_client_store_field_type(s, k);
  size_t n = fh_client_store_field_len(s, k), row_bytes = n * fh_state_type_size(type);
  int rc = 0;
  hid_t gk = fh_h5_group(g, name);
  if (gk < 0) keep_w(&rc, FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create group /state/%s", tmp, name));
  keep_w(&rc, fh_h5_attr_str(gk, "type", type_name(type)));
  keep_w(&rc, fh_h5_attr_int(gk, "n", (long long)n));
  hsize_t dims[2] = {(hsize_t)run->map.num_clients, n};
  hid_t t = fh_client_store_h5type(type);
  hid_t dv = create_ds(gk, "values", t, 2, dims);
  hid_t di = create_ds(gk, "initialised", H5T_NATIVE_UINT8, 1, dims);
  if (dv < 0 || di < 0) keep_w(&rc, FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create /state/%s", tmp, name));
  /* batches per rank, and whether any rank lacks a dataset (then nobody writes) */
  const int nlocal = run->nlocal, B = batch_rows(buffer_bytes, row_bytes, nlocal);
  int mine[2] = {nlocal > 0 ? (nlocal + B - 1) / B : 0, dv < 0 || di < 0}, all[2] = {0, 0};
  MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, run->comm);
  uint64_t hv = 0, hi = 0;
  if (!all[1]) {
    char none = 0, *buf = nlocal > 0 ? fh_malloc((size_t)B * row_bytes) : &none;
    uint8_t *init = fh_calloc((size_t)nlocal + 1, 1);
    for (int b = 0; b < all[0]; b++) {
      int i0 = b * B, cnt = b < mine[0] ? (nlocal - i0 < B ? nlocal - i0 : B) : 0;
      if (cnt > 0 && rc == 0) keep_w(&rc, get_rows(run, k, run->first_client + i0, cnt, buf, init + i0));
      if (cnt > 0) hv += rows_hash(buf, row_bytes, (uint64_t)(run->first_client + i0), (size_t)cnt);
      if (rows_xfer(dv, t, (hsize_t)(run->first_client + i0), (hsize_t)cnt, buf, coll, 1) < 0)
        keep_w(&rc, FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write /state/%s/values", tmp, name));
    }
    hi = rows_hash(init, 1, (uint64_t)run->first_client, (size_t)nlocal);
    if (rows_xfer(di, H5T_NATIVE_UINT8, (hsize_t)run->first_client, (hsize_t)nlocal, init, coll, 1) < 0)
      keep_w(&rc, FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write /state/%s/initialised", tmp, name));
    if (nlocal > 0) free(buf);
    free(init);
  }
  keep_w(&rc, put_checksum(dv, hv, row_bytes, run->comm));
  keep_w(&rc, put_checksum(di, hi, 1, run->comm));
  if (dv >= 0) H5Dclose(dv);
  if (di >= 0) H5Dclose(di);
  if (gk >= 0) H5Gclose(gk);
  return rc;
}

static void maybe_die_here(int rank, int round) {
  /* Test hook (documented in checkpoint.h): an interrupted write. */
  const char *v = getenv("FEDHPC_TEST_KILL_IN_CHECKPOINT");
  if (rank == 0 && v && atoi(v) == round) {
    fflush(NULL);
    raise(SIGKILL);
  }
}

/* A profile dataset [R, P, rest...] is checksummed in blocks [r, p, rest...]
 * of blk bytes (checksum_row_bytes = blk), block (r, p) hashed with index
 * r P + p: each rank hashes the blocks of its own slab p = rank, and the sum
 * equals that over the whole dataset read as R P rows of blk bytes. */
static uint64_t profile_slab_hash(const void *slab, size_t blk, hsize_t R, hsize_t P, int rank) {
  uint64_t s = 0;
  for (hsize_t r = 0; r < R; r++)
    s += fh_checkpoint_row_hash((const char *)slab + r * blk, blk, (uint64_t)(r * P + (hsize_t)rank));
  return s;
}

static size_t profile_block_bytes(hid_t type, int ndim, const hsize_t *pd) {
  size_t blk = H5Tget_size(type);
  for (int i = 2; i < ndim; i++) blk *= (size_t)pd[i];
  return blk;
}

/* Collective: a profile dataset [R, P, FH_NPHASES(, E)], each rank its slab,
 * with its checksum. An empty dataset has no storage to write to: every rank
 * skips it alike. */
static int write_profile_ds(hid_t g, const char *name, hid_t type, int ndim, const hsize_t *pd, int rank,
                            const void *data, hid_t coll, MPI_Comm comm, const char *tmp) {
  hid_t d = create_ds(g, name, type, ndim, pd);
  int have = d >= 0, all = 0, rc = 0;
  MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, comm);
  if (!all || (pd[0] > 0 && profile_xfer(d, type, rank, (void *)data, coll, 1) < 0))
    keep_w(&rc, FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write /profile/%s", tmp, name));
  const size_t blk = profile_block_bytes(type, ndim, pd);
  keep_w(&rc, put_checksum(all ? d : -1, profile_slab_hash(data, blk, pd[0], pd[1], rank), blk, comm));
  if (d >= 0) H5Dclose(d);
  return rc;
}

/* A whole 1-D dataset of rank 0's (independent write), with its checksum
 * (every rank makes the collective calls). */
static int write_whole(hid_t loc, const char *name, hid_t t, size_t n, size_t esize, const void *data, int rank,
                       MPI_Comm comm, const char *tmp) {
  hsize_t dn = n;
  hid_t d = create_ds(loc, name, t, 1, &dn);
  int rc = 0;
  if (d < 0 || (rank == 0 && n > 0 && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
    keep_w(&rc, FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write /%s", tmp, name));
  keep_w(&rc, put_checksum(d, rank == 0 ? rows_hash(data, n * esize, 0, 1) : 0, 0, comm));
  if (d >= 0) H5Dclose(d);
  return rc;
}

/* Rank 0, before the file is created: the space the checkpoint will take
 * (data, plus 1 MiB and 1/16 for HDF5's metadata) is reserved on its file
 * system and given back, so that a disk too full for it is refused before
 * anything is written (a disk that fills during the write is handled below). */
static size_t estimate_bytes(const fh_run *run, int nrows, const fh_profile_history *hist, const char *ini) {
  const size_t K = (size_t)run->map.num_clients;
  size_t b = run->payload_n * sizeof(float) + strlen(ini) + (1u << 20);
  for (int i = 0; i < run->nserver; i++) b += run->server[i].n * fh_state_type_size(run->server[i].type);
  for (int k = 0; k < fh_client_store_nfields(run->state); k++)
    b += K * (fh_client_store_field_len(run->state, k) * fh_state_type_size(fh_client_store_field_type(run->state, k)) + 1);
  b += (size_t)nrows * FH_METRIC_MAX_COLUMNS * sizeof(double);
  b += (size_t)hist->rounds * run->nranks * FH_NPHASES * (2 * sizeof(double) + (size_t)hist->nevents * sizeof(long long));
  return b + b / 16;
}

static int reserve_space(const char *tmp, size_t bytes) {
  char path[4300];
  snprintf(path, sizeof path, "%s.reserve", tmp);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    const char *cause = fh_write_cause(tmp, errno);
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create the checkpoint: %s", tmp, cause[0] ? cause : strerror(errno));
  }
  int r = fallocate(fd, 0, 0, (off_t)bytes), e = errno;
  close(fd);
  unlink(path);
  if (r == 0 || (e != ENOSPC && e != EDQUOT)) return 0; /* EOPNOTSUPP: the file system cannot say */
  return FH_FAIL(FH_ERR_OUTPUT, "%s: %s (the checkpoint needs about %.1f MiB)", tmp,
                 e == ENOSPC ? "no space left on device" : "disk quota exceeded", (double)bytes / 1048576.0);
}

/* Collective: the file attributes, the same values on every rank. */
static int write_attrs(hid_t f, const fh_run *run, int round, const char *ini) {
  int rc = 0;
  keep_w(&rc, fh_h5_attr_str(f, "format", CK_FORMAT));
  keep_w(&rc, fh_h5_attr_int(f, "format_version", CK_FORMAT_VERSION));
  keep_w(&rc, fh_h5_attr_int(f, "round", round));
  keep_w(&rc, fh_h5_attr_int(f, "rounds", run->rounds));
  keep_w(&rc, fh_h5_attr_int(f, "num_clients", run->map.num_clients));
  keep_w(&rc, fh_h5_attr_int(f, "nranks", run->nranks));
  keep_w(&rc, fh_h5_attr_str(f, "algorithm", run->alg->name));
  keep_w(&rc, fh_h5_attr_int(f, "payload_n", (long long)run->payload_n));
  keep_w(&rc, fh_h5_attr_str(f, "config", ini));
  keep_w(&rc, fh_h5_attr_str(f, "fedhpc_version", FEDHPC_VERSION));
  keep_w(&rc, fh_h5_attr_str(f, "source_revision", FEDHPC_GIT_REV));
  return rc;
}

/* Collective: the global payload and server vectors (rank 0's). */
static int write_server(hid_t f, const fh_run *run, const char *tmp) {
  int rc = 0;
  keep_w(&rc, write_whole(f, "global", H5T_NATIVE_FLOAT, run->payload_n, sizeof(float), run->global, run->rank,
                          run->comm, tmp));
  hid_t g = fh_h5_group(f, "server");
  for (int i = 0; i < run->nserver; i++) {
    const fh_server_vec *v = &run->server[i];
    char name[96];
    snprintf(name, sizeof name, "server/%.63s", v->name);
    keep_w(&rc, write_whole(f, name, fh_client_store_h5type(v->type), v->n, fh_state_type_size(v->type), v->data,
                            run->rank, run->comm, tmp));
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    keep_w(&rc, fh_h5_attr_str(d, "type", type_name(v->type)));
    if (d >= 0) H5Dclose(d);
  }
  if (g >= 0) H5Gclose(g);
  return rc;
}

/* Collective: the metrics rows so far (rank 0's), one dataset per column. */
static int write_metrics(hid_t f, const fh_run *run, const fh_round_metrics *rows, int nr, const char *tmp) {
  const fh_metric_column *cols;
  const int ncols = fh_metric_columns(&cols);
  int rc = 0;
  for (int c = 0; c < ncols; c++) { /* the groups of nested columns ("personal/client_accuracy") */
    char group[64];
    snprintf(group, sizeof group, "metrics/%.47s", cols[c].path);
    *strrchr(group, '/') = '\0';
    if (strcmp(group, "metrics") != 0) {
      hid_t gg = fh_h5_group(f, group);
      if (gg >= 0) H5Gclose(gg);
    }
  }
  double *col = fh_malloc(((size_t)nr + 1) * sizeof(double));
  int *icol = fh_malloc(((size_t)nr + 1) * sizeof(int));
  for (int c = 0; c < ncols; c++) {
    char name[64];
    snprintf(name, sizeof name, "metrics/%.47s", cols[c].path);
    for (int r = 0; r < nr && run->rank == 0; r++) {
      const char *row = (const char *)&rows[r] + cols[c].offset;
      if (cols[c].is_int) memcpy(&icol[r], row, sizeof(int));
      else memcpy(&col[r], row, sizeof(double));
    }
    keep_w(&rc, cols[c].is_int ? write_whole(f, name, H5T_NATIVE_INT, (size_t)nr, sizeof(int), icol, run->rank, run->comm, tmp)
                               : write_whole(f, name, H5T_NATIVE_DOUBLE, (size_t)nr, sizeof(double), col, run->rank,
                                             run->comm, tmp));
  }
  free(col);
  free(icol);
  return rc;
}

/* Collective: each rank's profile history, its column of every dataset. */
static int write_profile(hid_t f, const fh_run *run, const fh_profile_history *hist, const fh_profiler *prof,
                         hid_t coll, const char *tmp) {
  int rc = 0;
  hid_t g = fh_h5_group(f, "profile");
  char events[FH_MAX_EVENTS * 66] = "";
  for (int i = 0; i < prof->nevents; i++) {
    if (i) strcat(events, ",");
    strcat(events, prof->event_names[i]);
  }
  keep_w(&rc, fh_h5_attr_str(g, "events", events));
  keep_w(&rc, fh_h5_attr_int(g, "nranks", run->nranks));
  keep_w(&rc, fh_h5_attr_int(g, "first_round", hist->first_round));
  hsize_t pd[4] = {(hsize_t)hist->rounds, (hsize_t)run->nranks, FH_NPHASES, (hsize_t)hist->nevents};
  keep_w(&rc, write_profile_ds(g, "time", H5T_NATIVE_DOUBLE, 3, pd, run->rank, hist->time, coll, run->comm, tmp));
  keep_w(&rc, write_profile_ds(g, "flops", H5T_NATIVE_DOUBLE, 3, pd, run->rank, hist->flops, coll, run->comm, tmp));
  if (hist->nevents)
    keep_w(&rc, write_profile_ds(g, "counters", H5T_NATIVE_LLONG, 4, pd, run->rank, hist->counts, coll, run->comm, tmp));
  if (g >= 0) H5Gclose(g);
  return rc;
}

/* Collective: the end of a write. The ranks agree on what failed before any
 * flush: after a failed write the file is neither flushed nor closed (HDF5
 * would write it again, fail on some ranks only and leave them in different
 * collective calls, or crash at shutdown); it is left open (io/h5util.h,
 * fh_h5_files_left_open) and rank 0 removes it. Otherwise the collective flush
 * (MPI_File_sync: the MPI-IO driver does not sync at close), one agreement,
 * the collective close, one agreement, and rank 0's fsync and rename. */
static int finish_write(hid_t f, int rc, const char *tmp, const char *path, const char *run_dir, MPI_Comm comm,
                        int rank) {
  if (rc != 0 && fh_error_code() == FH_ERR_OUTPUT) { /* say why, on the rank that failed */
    const char *cause = fh_write_cause(tmp, ck_errno);
    if (cause[0]) fh_error_suffix(": %s", cause);
  }
  rc = fh_error_agree(comm, rc);
  int lrc = 0;
  if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
    const char *cause = fh_write_cause(tmp, errno);
    lrc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot flush the checkpoint to disk%s%s", tmp, cause[0] ? ": " : "", cause);
  }
  if (rc == 0) rc = fh_error_agree(comm, lrc);
  if (rc == 0) { /* metadata is clean: the close writes nearly nothing */
    if (H5Fclose(f) < 0) lrc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot close the checkpoint", tmp);
    rc = fh_error_agree(comm, lrc);
  }
  if (rank == 0) {
    if (rc == 0) rc = sync_and_rename(tmp, path, run_dir);
    else remove(tmp);
  }
  return fh_error_agree(comm, rc);
}

int fh_checkpoint_write(fh_run *run, const char *run_dir, int round, const fh_round_metrics *rows, int nrows,
                        const fh_profile_history *hist, const fh_profiler *prof, const char *ini) {
  MPI_Comm comm = run->comm;
  const int rank = run->rank;
  double t0 = MPI_Wtime();
  char path[4200], tmp[4200];
  snprintf(path, sizeof path, "%s/checkpoint.h5", run_dir);
  snprintf(tmp, sizeof tmp, "%s/checkpoint.h5.tmp", run_dir);
  int nr = nrows;
  MPI_Bcast(&nr, 1, MPI_INT, 0, comm);
  int rc = rank == 0 ? reserve_space(tmp, estimate_bytes(run, nr, hist, ini)) : 0;
  rc = fh_error_agree(comm, rc);
  if (rc) {
    fh_error_prefix("checkpoint after round %d: ", round);
    return rc;
  }

  hid_t fapl = mpio_fapl(comm);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  rc = agree_open(comm, f, f >= 0 ? 0 : FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create the checkpoint; check that "
                                                              "the run folder is writable and not full", tmp));
  if (rc) return rc;
  /* From here on every rank makes every collective call, whatever fails
   * locally (rc keeps its first error); the ranks agree before the flush. */
  /* Rows go in independent writes: each rank's rows are one contiguous block,
   * and a failed write (a full disk) inside MPI-IO's collective buffering
   * leaves the other ranks waiting in it for good (Open MPI 4.1, OMPIO). */
  hid_t coll = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_dxpl_mpio(coll, H5FD_MPIO_INDEPENDENT);
  ck_errno = 0;
  keep_w(&rc, write_attrs(f, run, round, ini));
  keep_w(&rc, write_server(f, run, tmp));
  size_t buffer_bytes = (size_t)fh_cfg_int(run->cfg, "checkpoint.buffer_mib") << 20;
  hid_t g = fh_h5_group(f, "state"); /* client state: each rank its rows */
  for (int k = 0; k < fh_client_store_nfields(run->state); k++) keep_w(&rc, write_field(run, g, k, buffer_bytes, coll, tmp));
  if (g >= 0) H5Gclose(g);
  maybe_die_here(rank, round);
  keep_w(&rc, write_metrics(f, run, rows, nr, tmp));
  keep_w(&rc, write_profile(f, run, hist, prof, coll, tmp));
  H5Pclose(coll);

  rc = finish_write(f, rc, tmp, path, run_dir, comm, rank);
  if (rc) {
    fh_error_prefix("checkpoint after round %d: ", round);
    fh_error_suffix("; the previous checkpoint is kept: free space and resume from it");
    return rc;
  }
  if (rank == 0) {
    struct stat st;
    double mib = stat(path, &st) == 0 ? (double)st.st_size / (1024.0 * 1024.0) : 0;
    fh_info("checkpoint after round %d: %s (%.1f MiB) in %.2f s", round, path, mib, MPI_Wtime() - t0);
  }
  return 0;
}

/* ---- reading ------------------------------------------------------------------ */

static hsize_t npoints(hid_t d) {
  hid_t sp = H5Dget_space(d);
  hssize_t np = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  return np < 0 ? 0 : (hsize_t)np;
}

static hsize_t links_in(hid_t f, const char *group) {
  if (H5Lexists(f, group, H5P_DEFAULT) <= 0) return 0;
  H5G_info_t info;
  hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
  if (g < 0 || H5Gget_info(g, &info) < 0) info.nlinks = 0;
  if (g >= 0) H5Gclose(g);
  return info.nlinks;
}

/* Collective: d's checksum attribute against `mine` summed over the ranks.
 * A dataset without one (a checkpoint of format 1) is not checked. Every rank
 * decides alike (the attribute is read collectively, the sum agreed). */
static int verify_checksum(hid_t d, uint64_t mine, const char *path, const char *name, MPI_Comm comm) {
  uint64_t all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_UINT64_T, MPI_SUM, comm);
  if (d < 0 || H5Aexists(d, "checksum") <= 0) return 0;
  long long want = fh_h5_attr_int_get(d, "checksum", 0);
  if ((uint64_t)want == all) return 0;
  return FH_FAIL(FH_ERR_DATA, "%s: /%s is damaged (its checksum does not match its data); resume from an intact "
                              "copy of the checkpoint or start the run afresh", path, name);
}

/* The first non-finite value of a float payload, or -1. */
static long long first_nonfinite(const float *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i])) return (long long)i;
  return -1;
}

/* Collective: reads one client-state field into the store, each rank its
 * rows, and verifies its checksums. The checks read the same metadata on
 * every rank, so they agree; a failure to store the rows is this rank's
 * alone, and it goes on making the collective reads all the same. */
static int read_field(fh_run *run, hid_t f, const char *path, int k, size_t buffer_bytes, hid_t coll) {
  fh_client_store *s = run->state;
  const char *name = fh_client_store_field_name(s, k);
  fh_state_type type = fh_client_store_field_type(s, k);
  size_t n = fh_client_store_field_len(s, k), row_bytes = n * fh_state_type_size(type);
  char dname[160];
  snprintf(dname, sizeof dname, "state/%.63s", name);
  int rc = 0;
  hid_t gk = fh_h5_path_exists(f, dname) ? H5Gopen2(f, dname, H5P_DEFAULT) : -1;
  hid_t dv = -1, di = -1;
  if (gk < 0) {
    rc = FH_FAIL(FH_ERR_CONFIG, "%s has no client-state field '%s' that %s declares; was it written by another "
                                "version of fedhpc?", path, name, run->alg->name);
  } else {
    char *tn = attr_str_read(gk, "type");
    long long cn = fh_h5_attr_int_get(gk, "n", -1);
    if (!tn || strcmp(tn, type_name(type)) != 0 || cn != (long long)n)
      rc = FH_FAIL(FH_ERR_CONFIG, "%s: client-state field '%s' is %s[%lld] there, %s[%zu] in this run", path, name,
                   tn ? tn : "?", cn, type_name(type), n);
    free(tn);
    dv = H5Dopen2(gk, "values", H5P_DEFAULT);
    di = H5Dopen2(gk, "initialised", H5P_DEFAULT);
    if (rc == 0 && (dv < 0 || di < 0)) rc = FH_FAIL(FH_ERR_DATA, "%s: cannot open /state/%s", path, name);
  }
  /* batches per rank, and whether any rank cannot read (then nobody reads) */
  const int nlocal = run->nlocal, B = batch_rows(buffer_bytes, row_bytes, nlocal);
  int mine[2] = {nlocal > 0 ? (nlocal + B - 1) / B : 0, rc != 0}, all[2] = {0, 0};
  MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, run->comm);
  if (!all[1]) {
    char none = 0, *buf = nlocal > 0 ? fh_malloc((size_t)B * row_bytes) : &none;
    uint8_t *init = fh_calloc((size_t)nlocal + 1, 1);
    hid_t t = fh_client_store_h5type(type);
    uint64_t hv = 0;
    if (rows_xfer(di, H5T_NATIVE_UINT8, (hsize_t)run->first_client, (hsize_t)nlocal, init, coll, 0) < 0)
      keep(&rc, FH_FAIL(FH_ERR_DATA, "%s: cannot read /state/%s/initialised", path, name));
    for (int b = 0; b < all[0]; b++) {
      int i0 = b * B, cnt = b < mine[0] ? (nlocal - i0 < B ? nlocal - i0 : B) : 0;
      if (rows_xfer(dv, t, (hsize_t)(run->first_client + i0), (hsize_t)cnt, buf, coll, 0) < 0)
        keep(&rc, FH_FAIL(FH_ERR_DATA, "%s: cannot read /state/%s/values", path, name));
      if (cnt > 0) hv += rows_hash(buf, row_bytes, (uint64_t)(run->first_client + i0), (size_t)cnt);
      if (cnt > 0 && rc == 0) keep(&rc, put_rows(run, k, run->first_client + i0, cnt, buf, init + i0));
    }
    char what[200];
    snprintf(what, sizeof what, "%s/values", dname);
    keep(&rc, verify_checksum(dv, hv, path, what, run->comm));
    snprintf(what, sizeof what, "%s/initialised", dname);
    keep(&rc, verify_checksum(di, rows_hash(init, 1, (uint64_t)run->first_client, (size_t)nlocal), path, what,
                              run->comm));
    if (nlocal > 0) free(buf);
    free(init);
  }
  if (dv >= 0) H5Dclose(dv);
  if (di >= 0) H5Dclose(di);
  if (gk >= 0) H5Gclose(gk);
  return rc;
}

/* Collective: the metrics rows. Every rank opens every column (metadata is
 * collective); rank 0 alone reads them, verifies them and gets *rows, *nrows. */
static int read_metrics(hid_t f, const char *path, int rank, MPI_Comm comm, fh_round_metrics **rows, int *nrows) {
  const fh_metric_column *cols;
  const int ncols = fh_metric_columns(&cols);
  hid_t d = fh_h5_path_exists(f, "metrics/round") ? H5Dopen2(f, "metrics/round", H5P_DEFAULT) : -1;
  if (d < 0) return FH_FAIL(FH_ERR_DATA, "%s: no /metrics/round", path);
  int nr = (int)npoints(d);
  H5Dclose(d);
  fh_round_metrics *r = fh_calloc((size_t)nr + 1, sizeof *r);
  double *col = fh_malloc(((size_t)nr + 1) * sizeof(double));
  int *icol = fh_malloc(((size_t)nr + 1) * sizeof(int));
  int rc = 0;
  for (int c = 0; c < ncols; c++) {
    char name[64];
    snprintf(name, sizeof name, "metrics/%.47s", cols[c].path);
    d = fh_h5_path_exists(f, name) ? H5Dopen2(f, name, H5P_DEFAULT) : -1;
    /* a checkpoint from before run.schedule: no moves (every rank alike) */
    if (d < 0 && strncmp(cols[c].path, "schedule/", 9) == 0) continue;
    hid_t t = cols[c].is_int ? H5T_NATIVE_INT : H5T_NATIVE_DOUBLE;
    int bad = d < 0 || npoints(d) != (hsize_t)nr;
    if (!bad && rank == 0 && nr > 0)
      bad = H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, cols[c].is_int ? (void *)icol : (void *)col) < 0;
    if (bad) keep(&rc, FH_FAIL(FH_ERR_DATA, "%s: cannot read /%s (%d rows)", path, name, nr));
    const size_t esize = cols[c].is_int ? sizeof(int) : sizeof(double);
    keep(&rc, verify_checksum(d, rank == 0 && !bad ? rows_hash(cols[c].is_int ? (void *)icol : (void *)col,
                                                               (size_t)nr * esize, 0, 1) : 0,
                              path, name, comm));
    if (d >= 0) H5Dclose(d);
    for (int i = 0; i < nr && rc == 0 && rank == 0; i++) {
      char *dst = (char *)&r[i] + cols[c].offset;
      if (cols[c].is_int) memcpy(dst, &icol[i], sizeof(int));
      else memcpy(dst, &col[i], sizeof(double));
    }
  }
  free(col);
  free(icol);
  if (rc || rank != 0) {
    free(r);
    return rc;
  }
  *rows = r;
  *nrows = nr;
  return 0;
}

/* Collective: what the run is must match what the checkpoint holds; every
 * rank reads the same attributes (collective metadata) and decides alike. */
static int read_header(hid_t f, const fh_run *run, const char *path, int *round) {
  char *alg = attr_str_read(f, "algorithm");
  long long K = fh_h5_attr_int_get(f, "num_clients", -1), pn = fh_h5_attr_int_get(f, "payload_n", -1);
  *round = (int)fh_h5_attr_int_get(f, "round", -1);
  hsize_t nstate = links_in(f, "state"), nserver = links_in(f, "server");
  int rc = 0;
  if (*round < 0 || !alg)
    rc = FH_FAIL(FH_ERR_DATA, "%s: not a fedhpc checkpoint (no round or algorithm attribute)", path);
  else if (strcmp(alg, run->alg->name) != 0 || K != run->map.num_clients || pn != (long long)run->payload_n)
    rc = FH_FAIL(FH_ERR_CONFIG, "%s holds %s with %lld clients and a payload of %lld floats; this run is %s with %d "
                                "clients and %zu", path, alg, K, pn, run->alg->name, run->map.num_clients, run->payload_n);
  else if (nstate != (hsize_t)fh_client_store_nfields(run->state) || nserver != (hsize_t)run->nserver)
    rc = FH_FAIL(FH_ERR_CONFIG, "%s holds %llu client-state fields and %llu server vectors; %s declares %d and %d: "
                                "was it written by another version of fedhpc?", path,
                 (unsigned long long)nstate, (unsigned long long)nserver, run->alg->name,
                 fh_client_store_nfields(run->state), run->nserver);
  free(alg);
  return fh_error_agree(run->comm, rc);
}

/* Collective: the global payload and server vectors. Every rank opens and
 * checks them, rank 0 reads and verifies them (checksums; a global model with
 * a non-finite value is refused) and broadcasts them. */
static int read_server(hid_t f, fh_run *run, const char *path) {
  const int rank = run->rank;
  int rc = 0;
  hid_t d = fh_h5_path_exists(f, "global") ? H5Dopen2(f, "global", H5P_DEFAULT) : -1;
  int bad = d < 0 || npoints(d) != run->payload_n ||
            (rank == 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, run->global) < 0);
  if (bad) keep(&rc, FH_FAIL(FH_ERR_DATA, "%s: cannot read /global", path));
  keep(&rc, verify_checksum(d, rank == 0 && !bad ? rows_hash(run->global, run->payload_n * sizeof(float), 0, 1) : 0,
                            path, "global", run->comm));
  const int is_model = !(run->alg->flags & (FH_ALG_NO_GLOBAL | FH_ALG_NO_GLOBAL_MODEL));
  long long at = rank == 0 && rc == 0 && is_model ? first_nonfinite(run->global, run->payload_n) : -1;
  if (at >= 0)
    keep(&rc, FH_FAIL(FH_ERR_DATA, "%s: /global[%lld] = %g: the checkpoint's global model is not finite; resume "
                                   "from an intact copy of the checkpoint or start the run afresh", path, at,
                      (double)run->global[at]));
  if (d >= 0) H5Dclose(d);
  for (int i = 0; i < run->nserver; i++) {
    fh_server_vec *v = &run->server[i];
    char name[96];
    snprintf(name, sizeof name, "server/%.63s", v->name);
    d = fh_h5_path_exists(f, name) ? H5Dopen2(f, name, H5P_DEFAULT) : -1;
    char *tn = d >= 0 ? attr_str_read(d, "type") : NULL;
    bad = 0;
    if (d < 0 || !tn || strcmp(tn, type_name(v->type)) != 0 || npoints(d) != v->n)
      bad = 1, keep(&rc, FH_FAIL(FH_ERR_CONFIG, "%s: server vector '%s' is missing or not %s[%zu]", path, v->name,
                                 type_name(v->type), v->n));
    else if (rank == 0 && H5Dread(d, fh_client_store_h5type(v->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, v->data) < 0)
      bad = 1, keep(&rc, FH_FAIL(FH_ERR_DATA, "%s: cannot read /%s", path, name));
    keep(&rc, verify_checksum(d, rank == 0 && !bad ? rows_hash(v->data, v->n * fh_state_type_size(v->type), 0, 1) : 0,
                              path, name, run->comm));
    free(tn);
    if (d >= 0) H5Dclose(d);
  }
  rc = fh_error_agree(run->comm, rc);
  if (rc == 0) {
    bcast_bytes(run->global, run->payload_n * sizeof(float), run->comm);
    for (int i = 0; i < run->nserver; i++)
      bcast_bytes(run->server[i].data, run->server[i].n * fh_state_type_size(run->server[i].type), run->comm);
  }
  return rc;
}

/* Collective: the profile history, continued when the layout is the same (rc
 * is agreed, and the attributes are the same on every rank: all ranks take the
 * same path). Returns this rank's own failure; *same: whether it continued. */
static int read_profile(hid_t f, const fh_run *run, const char *path, int rc, int round, fh_profile_history *hist,
                        const fh_profiler *prof, hid_t coll, int *same, long long *ck_nranks) {
  const int rank = run->rank;
  char events[FH_MAX_EVENTS * 66] = "";
  for (int i = 0; i < prof->nevents; i++) {
    if (i) strcat(events, ",");
    strcat(events, prof->event_names[i]);
  }
  char *ck_events = NULL;
  long long ck_first = 1;
  *ck_nranks = -1;
  hid_t g = H5Lexists(f, "profile", H5P_DEFAULT) > 0 ? H5Gopen2(f, "profile", H5P_DEFAULT) : -1;
  if (g >= 0) {
    ck_events = attr_str_read(g, "events");
    *ck_nranks = fh_h5_attr_int_get(g, "nranks", -1);
    ck_first = fh_h5_attr_int_get(g, "first_round", 1);
  }
  hid_t dt = g >= 0 && H5Lexists(g, "time", H5P_DEFAULT) > 0 ? H5Dopen2(g, "time", H5P_DEFAULT) : -1;
  hsize_t pd[4] = {0};
  if (dt >= 0) {
    hid_t sp = H5Dget_space(dt);
    H5Sget_simple_extent_dims(sp, pd, NULL);
    H5Sclose(sp);
  }
  *same = rc == 0 && dt >= 0 && *ck_nranks == run->nranks && ck_events && strcmp(ck_events, events) == 0 &&
          pd[0] == (hsize_t)(round - ck_first + 1);
  free(ck_events);
  int lrc = 0;
  if (*same) {
    int R = (int)pd[0], nev = hist->nevents;
    double *tbuf = fh_malloc(((size_t)R + 1) * FH_NPHASES * sizeof(double));
    double *fbuf = fh_calloc(((size_t)R + 1) * FH_NPHASES, sizeof(double));
    long long *cbuf = fh_calloc(((size_t)R + 1) * FH_NPHASES * (nev ? nev : 1), sizeof(long long));
    int prc = profile_xfer(dt, H5T_NATIVE_DOUBLE, rank, tbuf, coll, 0) < 0;
    hid_t dfl = H5Lexists(g, "flops", H5P_DEFAULT) > 0 ? H5Dopen2(g, "flops", H5P_DEFAULT) : -1;
    if (dfl < 0 || profile_xfer(dfl, H5T_NATIVE_DOUBLE, rank, fbuf, coll, 0) < 0) prc = 1;
    hid_t dc = -1;
    if (nev) {
      dc = H5Lexists(g, "counters", H5P_DEFAULT) > 0 ? H5Dopen2(g, "counters", H5P_DEFAULT) : -1;
      if (dc < 0 || profile_xfer(dc, H5T_NATIVE_LLONG, rank, cbuf, coll, 0) < 0) prc = 1;
    }
    /* the checksums: every rank its own slab's blocks (profile_slab_hash);
     * each verification is collective and agreed, so every rank takes the
     * same branches */
    const hsize_t P = (hsize_t)run->nranks;
    const size_t tblk = (size_t)FH_NPHASES * sizeof(double), cblk = (size_t)FH_NPHASES * nev * sizeof(long long);
    int bad = verify_checksum(dt, prc ? 0 : profile_slab_hash(tbuf, tblk, pd[0], P, rank), path, "profile/time",
                              run->comm);
    if (!bad)
      bad = verify_checksum(dfl, prc ? 0 : profile_slab_hash(fbuf, tblk, pd[0], P, rank), path, "profile/flops",
                            run->comm);
    if (!bad && nev)
      bad = verify_checksum(dc, prc ? 0 : profile_slab_hash(cbuf, cblk, pd[0], P, rank), path, "profile/counters",
                            run->comm);
    if (dfl >= 0) H5Dclose(dfl);
    if (dc >= 0) H5Dclose(dc);
    if (bad) lrc = bad;
    if (lrc) {
      /* the message is verify_checksum's */
    } else if (prc == 0) {
      hist->first_round = (int)ck_first;
      for (int r = 0; r < R; r++)
        fh_profile_history_append(hist, tbuf + (size_t)r * FH_NPHASES, fbuf + (size_t)r * FH_NPHASES,
                                  cbuf + (size_t)r * FH_NPHASES * nev);
    } else {
      lrc = FH_FAIL(FH_ERR_DATA, "%s: cannot read /profile", path);
    }
    free(tbuf);
    free(fbuf);
    free(cbuf);
  } else {
    hist->first_round = round + 1;
  }
  if (dt >= 0) H5Dclose(dt);
  if (g >= 0) H5Gclose(g);
  return lrc;
}

int fh_checkpoint_read(fh_run *run, const char *run_dir, fh_profile_history *hist, const fh_profiler *prof,
                       fh_round_metrics **rows, int *nrows, int *round) {
  MPI_Comm comm = run->comm;
  const int rank = run->rank;
  *rows = NULL;
  *nrows = 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/checkpoint.h5", run_dir);
  hid_t fapl = mpio_fapl(comm);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  int rc = agree_open(comm, f, f >= 0 ? 0 : FH_FAIL(FH_ERR_DATA, "%s: cannot open the checkpoint", path));
  if (rc) return rc;
  rc = read_header(f, run, path, round);
  if (rc == 0) rc = read_server(f, run, path);

  /* client state: collective reads of each rank's rows, every field whatever
   * failed before on this rank; the ranks agree after the last */
  hid_t coll = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_dxpl_mpio(coll, H5FD_MPIO_COLLECTIVE);
  size_t buffer_bytes = (size_t)fh_cfg_int(run->cfg, "checkpoint.buffer_mib") << 20;
  if (rc == 0) {
    for (int k = 0; k < fh_client_store_nfields(run->state); k++)
      keep(&rc, read_field(run, f, path, k, buffer_bytes, coll));
    rc = fh_error_agree(comm, rc);
  }
  int same = 0;
  long long ck_nranks = -1;
  int lrc = read_profile(f, run, path, rc, *round, hist, prof, coll, &same, &ck_nranks); /* this rank's own */
  H5Pclose(coll);

  if (rc == 0) keep(&lrc, read_metrics(f, path, rank, comm, rows, nrows));
  if (rank == 0 && rc == 0 && lrc == 0 && *nrows != *round)
    lrc = FH_FAIL(FH_ERR_DATA, "%s: %d metrics rows for %d rounds", path, *nrows, *round);
  H5Fclose(f);
  rc = fh_error_agree(comm, rc ? rc : lrc);
  if (rc) {
    free(*rows);
    *rows = NULL;
    *nrows = 0;
    return rc;
  }
  if (rank == 0 && !same)
    fh_info("the checkpoint's profile history (%lld ranks) cannot continue on %d ranks or with other events: "
            "profile.h5 starts at round %d", ck_nranks, run->nranks, *round + 1);
  return 0;
}

/* ---- the deck against the checkpoint ------------------------------------------- */

/* The checkpoint's deck, as the add-ons' resume checks read it. */
typedef struct {
  const fh_cfg_pair *kv;
  int n;
} ck_deck;
static const char *ck_lookup(const void *ck, const char *key) {
  return fh_config_pairs_get(((const ck_deck *)ck)->kv, ((const ck_deck *)ck)->n, key);
}

/* Keys a resumed run may change: they touch no state. */
static int may_change(const char *key) {
  static const char *const exact[] = {"run.rounds", "run.eval_every", "run.dedicated_server", "run.schedule",
                                      "run.schedule_bandwidth"};
  static const char *const prefix[] = {"output.", "checkpoint.", "profile.", "state."};
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
    if (strcmp(key, exact[i]) == 0) return 1;
  for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
    if (strncmp(key, prefix[i], strlen(prefix[i])) == 0) return 1;
  return 0;
}

static int check_on_root(const fh_config *cfg, const char *run_dir, int *round) {
  char path[4200], tmp[4200];
  snprintf(path, sizeof path, "%s/checkpoint.h5", run_dir);
  snprintf(tmp, sizeof tmp, "%s/checkpoint.h5.tmp", run_dir);
  struct stat st;
  if (stat(run_dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return FH_FAIL(FH_ERR_USAGE, "--resume %s: no such run folder", run_dir);
  if (stat(path, &st) != 0)
    return FH_FAIL(FH_ERR_USAGE, "--resume %s: no checkpoint %s%s; run without --resume to start afresh, and set "
                                 "checkpoint.every for periodic checkpoints", run_dir, path,
                   stat(tmp, &st) == 0 ? " (only an incomplete checkpoint.h5.tmp: the first write was interrupted)" : "");
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot open the checkpoint (not an HDF5 file?)", path);
  char *format = attr_str_read(f, "format"), *ck_ini = attr_str_read(f, "config");
  *round = (int)fh_h5_attr_int_get(f, "round", -1);
  H5Fclose(f);
  int rc = 0;
  if (!format || strcmp(format, CK_FORMAT) != 0 || !ck_ini || *round < 0)
    rc = FH_FAIL(FH_ERR_DATA, "%s: not a fedhpc checkpoint", path);
  free(format);
  if (rc) {
    free(ck_ini);
    return rc;
  }
  char *deck_ini = fh_config_dump(cfg);
  fh_cfg_pair *ck = NULL, *dk = NULL;
  int nck = fh_config_pairs(ck_ini, &ck), ndk = fh_config_pairs(deck_ini, &dk);
  for (int i = 0; i < ndk && rc == 0; i++) {
    const char *key = dk[i].key;
    if (may_change(key)) continue;
    const char *was = fh_config_pairs_get(ck, nck, key);
    if (was && strcmp(was, dk[i].val) != 0)
      rc = FH_FAIL(FH_ERR_CONFIG, "--resume %s: %s = %s in the checkpoint but %s in the deck (%s); a resumed run "
                                  "must keep it (only run.rounds, run.eval_every, run.dedicated_server, output.*, "
                                  "checkpoint.*, profile.* and state.* may change)",
                   run_dir, key, was[0] ? was : "(empty)", dk[i].val[0] ? dk[i].val : "(empty)", fh_cfg_origin(cfg, key));
    else if (!was && strcmp(fh_cfg_origin(cfg, key), "default") != 0)
      rc = FH_FAIL(FH_ERR_CONFIG, "--resume %s: %s = %s in the deck, but the checkpoint (from an older fedhpc) has no "
                                  "such key: remove it from the deck to resume", run_dir, key, dk[i].val);
  }
  if (rc == 0 && fh_cfg_int(cfg, "run.rounds") < *round)
    rc = FH_FAIL(FH_ERR_CONFIG, "--resume %s: run.rounds = %lld in the deck, but the checkpoint already holds %d "
                                "rounds; set run.rounds to %d or more", run_dir, fh_cfg_int(cfg, "run.rounds"), *round,
                 *round);
  if (rc == 0) rc = fh_addons_resume_check(cfg, ck_lookup, &(ck_deck){ck, nck}, run_dir);
  for (int i = 0; i < nck && rc == 0; i++)
    if (!fh_config_pairs_get(dk, ndk, ck[i].key))
      fh_warn("--resume %s: the checkpoint's key %s is unknown to this fedhpc; ignored", run_dir, ck[i].key);
  fh_config_pairs_free(ck, nck);
  fh_config_pairs_free(dk, ndk);
  free(ck_ini);
  free(deck_ini);
  return rc;
}

int fh_checkpoint_check(const fh_config *cfg, const char *run_dir, MPI_Comm comm, int *round) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int rc = rank == 0 ? check_on_root(cfg, run_dir, round) : 0;
  rc = fh_error_agree(comm, rc);
  MPI_Bcast(round, 1, MPI_INT, 0, comm);
  return rc;
}
