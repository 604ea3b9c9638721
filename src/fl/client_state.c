/* The per-client state store (interface and usage in client_state.h).
 *
 * memory backend: per field, an array [nlocal] of row pointers, each row
 *   allocated (zero-filled) the first time its client is acquired; acquire
 *   hands out the row itself.
 * hdf5 backend: one file per rank (RUN/state.rank<r>.h5, or under state.dir
 *   with the run's name and a hash of its folder's path in the file name), one
 *   chunked dataset [nlocal, n] per field
 *   (chunks of whole rows, at least 4 KiB); flags [nlocal] in memory say which
 *   rows exist. Acquire reads the row into a buffer of its own, release writes
 *   it back when dirty (and always on the first acquire, so a row dropped by a
 *   checkpoint restore never shows its old contents) and frees the buffer.
 *
 * binary16: fh_f32_to_f16 rounds to nearest, ties to even, in integer
 * arithmetic on the bit patterns (no dependence on the FPU's rounding mode or
 * on F16C instructions). */
#include "fl/client_state.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/paths.h"

const fh_key_spec fh_state_keys[] = {
    {"state.backend", FH_T_ENUM, "memory", 0, 0, "memory|hdf5",
     "where per-client state lives: memory, or one HDF5 file per rank (state.dir)"},
    {"state.dir", FH_T_STRING, "", 0, 0, NULL,
     "folder of the hdf5 backend's per-rank files (removed at the end); default: the run folder"},
    FH_KEYS_END};

typedef struct {
  char name[64];
  fh_state_type type;
  size_t n, row_bytes;
  size_t nset;   /* clients with a vector            */
  void **rows;   /* memory: [nlocal], NULL = none    */
  uint8_t *init; /* hdf5: [nlocal]                   */
  hid_t dset;    /* hdf5: [nlocal, n]                */
} store_field;

typedef struct {
  int field, client, fresh, guest;
  void *buf;
} held_vec;

/* A guest (run.schedule = balanced): a client hosted elsewhere, here for one
 * round; its vectors in memory whatever the backend. */
typedef struct {
  int client;
  void **rows; /* [nfields], NULL = none */
} guest_vecs;

struct fh_client_store {
  int hdf5;
  int num_clients, first, nlocal, rank;
  int nfields, cap;
  store_field *f;
  held_vec held[FH_STATE_MAX_HELD];
  int nheld;
  hid_t file; /* hdf5 backend with nlocal > 0 */
  char path[4200];
  guest_vecs *guests; /* [nguests] */
  int nguests, gcap;
};

static _Noreturn void __attribute__((format(printf, 2, 3))) store_abort(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fedhpc: error: client state: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\n", stderr);
  va_end(ap);
  MPI_Abort(MPI_COMM_WORLD, code);
  abort();
}

size_t fh_state_type_size(fh_state_type t) {
  switch (t) {
    case FH_STATE_F32: return 4;
    case FH_STATE_F16: return 2;
    case FH_STATE_F64: return 8;
    case FH_STATE_I32: return 4;
  }
  return 0;
}

/* HDF5 type of a field, in memory and in files (binary16 as an HDF5 float type
 * with h5py's layout, so numpy reads it as float16). Owned here. */
hid_t fh_client_store_h5type(fh_state_type t) {
  static hid_t f16 = -1;
  switch (t) {
    case FH_STATE_F32: return H5T_NATIVE_FLOAT;
    case FH_STATE_F64: return H5T_NATIVE_DOUBLE;
    case FH_STATE_I32: return H5T_NATIVE_INT32;
    case FH_STATE_F16:
      if (f16 < 0) {
        f16 = H5Tcopy(H5T_IEEE_F32LE);
        H5Tset_fields(f16, 15, 10, 5, 0, 10);
        H5Tset_size(f16, 2);
        H5Tset_ebias(f16, 15);
      }
      return f16;
  }
  return -1;
}

/* Why a write of the scratch file failed, in words. */
static const char *write_cause(const char *path) {
  const char *c = fh_write_cause(path, errno);
  return c[0] ? c : "is the disk of state.dir full?";
}

/* 8 hex digits of FNV-1a over the run folder's absolute path (the working
 * directory joined in front of a relative one): runs in folders of the same
 * name sharing state.dir get files of their own. */
static void run_path_hash(const char *run_dir, char out[9]) {
  char cwd[4096] = "";
  if (run_dir[0] != '/' && !getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
  uint32_t h = 2166136261u;
  const char *parts[3] = {cwd, run_dir[0] != '/' ? "/" : "", run_dir};
  for (int i = 0; i < 3; i++)
    for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) h = (h ^ *p) * 16777619u;
  snprintf(out, 9, "%08x", (unsigned)h);
}

int fh_client_store_create(fh_client_store **out, const fh_config *cfg, MPI_Comm comm, int num_clients,
                           int first_client, int nlocal, const char *run_dir) {
  fh_client_store *s = fh_calloc(1, sizeof *s);
  *out = s;
  MPI_Comm_rank(comm, &s->rank);
  s->hdf5 = fh_cfg_enum(cfg, "state.backend") == 1; /* memory|hdf5 */
  s->num_clients = num_clients;
  s->first = first_client;
  s->nlocal = nlocal;
  s->file = -1;
  int rc = 0;
  if (s->hdf5 && nlocal > 0) {
    /* RUN/state.rank<r>.h5, or state.dir/<run name>.<hash>.state.rank<r>.h5
     * (hash: of the run folder's absolute path) so that runs sharing a scratch
     * folder do not collide, even runs of one name in different folders. */
    const char *dir = fh_cfg_str(cfg, "state.dir");
    if (dir[0]) {
      const char *slash = strrchr(run_dir, '/');
      char hash[9];
      run_path_hash(run_dir, hash);
      snprintf(s->path, sizeof s->path, "%s/%s.%s.state.rank%d.h5", dir, slash ? slash + 1 : run_dir, hash, s->rank);
    } else {
      dir = run_dir;
      snprintf(s->path, sizeof s->path, "%s/state.rank%d.h5", dir, s->rank);
    }
    if (fh_mkdir_p(dir) != 0)
      rc = FH_FAIL(FH_ERR_OUTPUT, "state.dir = '%s': cannot create the folder: %s; set state.dir to a writable folder",
                   dir, strerror(errno));
    else if ((s->file = H5Fcreate(s->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0)
      rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create the client-state file; set state.dir to a writable folder",
                   s->path);
  }
  return fh_error_agree(comm, rc);
}

void fh_client_store_free(fh_client_store *s) {
  if (!s) return;
  for (int i = 0; i < s->nheld; i++)
    if (s->hdf5 && !s->held[i].guest) free(s->held[i].buf);
  fh_client_store_guests_clear(s);
  free(s->guests);
  for (int k = 0; k < s->nfields; k++) {
    store_field *f = &s->f[k];
    if (f->rows)
      for (int i = 0; i < s->nlocal; i++) free(f->rows[i]);
    free(f->rows);
    free(f->init);
    if (f->dset >= 0) H5Dclose(f->dset);
  }
  free(s->f);
  if (s->file >= 0) {
    H5Fclose(s->file);
    remove(s->path);
  }
  free(s);
}

int fh_client_store_field(fh_client_store *s, const char *name, fh_state_type type, size_t n, int *field) {
  if (n == 0 || strlen(name) >= sizeof s->f[0].name || strchr(name, '/') || fh_state_type_size(type) == 0)
    store_abort(FH_ERR_RUNTIME, "field '%s' of %zu elements: bad declaration (programming error)", name, n);
  for (int k = 0; k < s->nfields; k++)
    if (strcmp(s->f[k].name, name) == 0)
      store_abort(FH_ERR_RUNTIME, "field '%s' declared twice (programming error)", name);
  if (s->nfields == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 4;
    store_field *nf = fh_calloc((size_t)s->cap, sizeof *nf);
    if (s->nfields) memcpy(nf, s->f, (size_t)s->nfields * sizeof *nf);
    free(s->f);
    s->f = nf;
  }
  store_field *f = &s->f[s->nfields];
  memset(f, 0, sizeof *f);
  snprintf(f->name, sizeof f->name, "%s", name);
  f->type = type;
  f->n = n;
  f->row_bytes = n * fh_state_type_size(type);
  f->dset = -1;
  if (!s->hdf5) {
    f->rows = fh_calloc(s->nlocal ? (size_t)s->nlocal : 1, sizeof(void *));
  } else {
    f->init = fh_calloc(s->nlocal ? (size_t)s->nlocal : 1, 1);
    if (s->file >= 0) {
      /* Chunks of whole rows (at least 4 KiB), at most 256 MiB. */
      hsize_t dims[2] = {(hsize_t)s->nlocal, n}, chunk[2];
      size_t esz = fh_state_type_size(type);
      chunk[1] = n * esz > ((size_t)1 << 28) ? ((size_t)1 << 28) / esz : n;
      chunk[0] = f->row_bytes >= 4096 ? 1 : (4096 + f->row_bytes - 1) / f->row_bytes;
      if (chunk[0] > dims[0]) chunk[0] = dims[0];
      hid_t sp = H5Screate_simple(2, dims, NULL);
      hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_chunk(dcpl, 2, chunk);
      f->dset = H5Dcreate2(s->file, name, fh_client_store_h5type(type), sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
      H5Pclose(dcpl);
      H5Sclose(sp);
      if (f->dset < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create the dataset of field '%s'", s->path, name);
    }
  }
  *field = s->nfields++;
  return 0;
}

static store_field *checked(const fh_client_store *s, int field, int client, const char *what) {
  if (field < 0 || field >= s->nfields)
    store_abort(FH_ERR_RUNTIME, "%s: no field %d (programming error)", what, field);
  if (client < s->first || client >= s->first + s->nlocal)
    store_abort(FH_ERR_RUNTIME, "%s of field '%s': client %d is not hosted on rank %d (programming error)", what,
                s->f[field].name, client, s->rank);
  return &s->f[field];
}

static guest_vecs *guest_of(const fh_client_store *s, int client) {
  for (int g = 0; g < s->nguests; g++)
    if (s->guests[g].client == client) return &s->guests[g];
  return NULL;
}

static int held_index(const fh_client_store *s, int field, int client) {
  for (int i = 0; i < s->nheld; i++)
    if (s->held[i].field == field && s->held[i].client == client) return i;
  return -1;
}

/* Rows [i0, i0+count) of a field's dataset <-> buf [count, n]. */
static herr_t rows_io(const store_field *f, int i0, int count, void *buf, int write) {
  hsize_t start[2] = {(hsize_t)i0, 0}, cnt[2] = {(hsize_t)count, f->n};
  hid_t fsp = H5Dget_space(f->dset);
  H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL);
  hid_t msp = H5Screate_simple(2, cnt, NULL);
  hid_t t = fh_client_store_h5type(f->type);
  herr_t st = write ? H5Dwrite(f->dset, t, msp, fsp, H5P_DEFAULT, buf) : H5Dread(f->dset, t, msp, fsp, H5P_DEFAULT, buf);
  H5Sclose(msp);
  H5Sclose(fsp);
  return st;
}

void *fh_client_store_acquire(fh_client_store *s, int field, int client, int *fresh) {
  guest_vecs *gv = guest_of(s, client);
  store_field *f = gv && field >= 0 && field < s->nfields ? &s->f[field] : checked(s, field, client, "acquire");
  if (held_index(s, field, client) >= 0)
    store_abort(FH_ERR_RUNTIME, "field '%s' of client %d acquired twice without a release (programming error)",
                f->name, client);
  if (s->nheld == FH_STATE_MAX_HELD)
    store_abort(FH_ERR_RUNTIME, "more than %d vectors held at once (programming error: release them)",
                FH_STATE_MAX_HELD);
  int i = client - s->first, isnew;
  void *p;
  if (gv) {
    isnew = gv->rows[field] == NULL;
    if (isnew) gv->rows[field] = fh_calloc(1, f->row_bytes);
    p = gv->rows[field];
  } else if (!s->hdf5) {
    isnew = f->rows[i] == NULL;
    if (isnew) {
      f->rows[i] = fh_calloc(1, f->row_bytes);
      f->nset++;
    }
    p = f->rows[i];
  } else {
    p = fh_malloc(f->row_bytes);
    isnew = !f->init[i];
    if (isnew) {
      memset(p, 0, f->row_bytes);
      f->init[i] = 1;
      f->nset++;
    } else if (rows_io(f, i, 1, p, 0) < 0) {
      store_abort(FH_ERR_OUTPUT, "%s: cannot read field '%s' of client %d; is the disk of state.dir full or gone?",
                  s->path, f->name, client);
    }
  }
  s->held[s->nheld++] = (held_vec){field, client, isnew, gv != NULL, p};
  if (fresh) *fresh = isnew;
  return p;
}

int fh_client_store_release(fh_client_store *s, int field, int client, int dirty) {
  const int guest = guest_of(s, client) != NULL;
  store_field *f = guest && field >= 0 && field < s->nfields ? &s->f[field] : checked(s, field, client, "release");
  int h = held_index(s, field, client);
  if (h < 0)
    store_abort(FH_ERR_RUNTIME, "release of field '%s' of client %d, which is not acquired (programming error)",
                f->name, client);
  int rc = 0;
  if (s->hdf5 && !guest) {
    if ((dirty || s->held[h].fresh) && rows_io(f, client - s->first, 1, s->held[h].buf, 1) < 0)
      rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write field '%s' of client %d: %s", s->path, f->name, client,
                   write_cause(s->path));
    free(s->held[h].buf);
  }
  s->held[h] = s->held[--s->nheld];
  return rc;
}

int fh_client_store_nfields(const fh_client_store *s) { return s->nfields; }
const char *fh_client_store_field_name(const fh_client_store *s, int field) { return s->f[field].name; }
fh_state_type fh_client_store_field_type(const fh_client_store *s, int field) { return s->f[field].type; }
size_t fh_client_store_field_len(const fh_client_store *s, int field) { return s->f[field].n; }
const char *fh_client_store_backend(const fh_client_store *s) { return s->hdf5 ? "hdf5" : "memory"; }

size_t fh_client_store_row_bytes(const fh_client_store *s) {
  size_t b = 0;
  for (int k = 0; k < s->nfields; k++) b += s->f[k].row_bytes;
  return b;
}

size_t fh_client_store_bytes(const fh_client_store *s) {
  size_t b = 0;
  for (int k = 0; k < s->nfields; k++) {
    const store_field *f = &s->f[k];
    if (s->hdf5)
      b += (size_t)s->nlocal;
    else
      b += (size_t)s->nlocal * sizeof(void *) + f->nset * f->row_bytes;
  }
  if (s->hdf5)
    for (int i = 0; i < s->nheld; i++) b += s->f[s->held[i].field].row_bytes;
  return b;
}

size_t fh_client_store_file_bytes(const fh_client_store *s) {
  hsize_t size = 0;
  if (s->file >= 0) {
    H5Fflush(s->file, H5F_SCOPE_LOCAL);
    H5Fget_filesize(s->file, &size);
  }
  return (size_t)size;
}

int fh_client_store_initialised(const fh_client_store *s, int field, int client) {
  const guest_vecs *gv = guest_of(s, client);
  if (gv && field >= 0 && field < s->nfields) return gv->rows[field] != NULL;
  const store_field *f = checked(s, field, client, "initialised");
  int i = client - s->first;
  return s->hdf5 ? f->init[i] != 0 : f->rows[i] != NULL;
}

static store_field *checked_rows(fh_client_store *s, int field, int first, int count, const char *what) {
  if (field < 0 || field >= s->nfields) store_abort(FH_ERR_RUNTIME, "%s: no field %d (programming error)", what, field);
  if (count <= 0) return &s->f[field];
  store_field *f = checked(s, field, first, what);
  checked(s, field, first + count - 1, what);
  for (int i = 0; i < s->nheld; i++)
    if (s->held[i].field == field && s->held[i].client >= first && s->held[i].client < first + count)
      store_abort(FH_ERR_RUNTIME, "%s of field '%s': client %d is held (programming error)", what, f->name,
                  s->held[i].client);
  return f;
}

int fh_client_store_get_rows(fh_client_store *s, int field, int first, int count, void *buf, uint8_t *init) {
  store_field *f = checked_rows(s, field, first, count, "get_rows");
  if (count <= 0) return 0;
  int i0 = first - s->first;
  char *out = buf;
  if (!s->hdf5) {
    for (int i = 0; i < count; i++) {
      void *row = f->rows[i0 + i];
      init[i] = row != NULL;
      if (row) memcpy(out + (size_t)i * f->row_bytes, row, f->row_bytes);
      else memset(out + (size_t)i * f->row_bytes, 0, f->row_bytes);
    }
    return 0;
  }
  if (rows_io(f, i0, count, buf, 0) < 0)
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot read field '%s' of clients %d..%d", s->path, f->name, first,
                   first + count - 1);
  for (int i = 0; i < count; i++) {
    init[i] = f->init[i0 + i];
    if (!init[i]) memset(out + (size_t)i * f->row_bytes, 0, f->row_bytes);
  }
  return 0;
}

int fh_client_store_put_rows(fh_client_store *s, int field, int first, int count, const void *buf,
                             const uint8_t *init) {
  store_field *f = checked_rows(s, field, first, count, "put_rows");
  if (count <= 0) return 0;
  int i0 = first - s->first;
  const char *in = buf;
  if (!s->hdf5) {
    for (int i = 0; i < count; i++) {
      void **row = &f->rows[i0 + i];
      if (init[i]) {
        if (!*row) *row = fh_malloc(f->row_bytes), f->nset++;
        memcpy(*row, in + (size_t)i * f->row_bytes, f->row_bytes);
      } else if (*row) {
        free(*row);
        *row = NULL;
        f->nset--;
      }
    }
    return 0;
  }
  if (rows_io(f, i0, count, (void *)buf, 1) < 0)
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write field '%s' of clients %d..%d: %s", s->path, f->name, first,
                   first + count - 1, write_cause(s->path));
  for (int i = 0; i < count; i++) {
    f->nset += (size_t)((init[i] != 0) - (f->init[i0 + i] != 0));
    f->init[i0 + i] = init[i] != 0;
  }
  return 0;
}

/* ---- a client's whole state as one buffer (run.schedule = balanced) --------- */

size_t fh_client_store_packed_bytes(const fh_client_store *s) {
  size_t b = (size_t)s->nfields;
  for (int k = 0; k < s->nfields; k++) b += s->f[k].row_bytes;
  return b;
}

int fh_client_store_pack(fh_client_store *s, int client, void *buf) {
  uint8_t *flags = buf;
  char *row = (char *)buf + s->nfields;
  for (int k = 0; k < s->nfields; row += s->f[k].row_bytes, k++)
    FH_TRY(fh_client_store_get_rows(s, k, client, 1, row, &flags[k]));
  return 0;
}

int fh_client_store_unpack(fh_client_store *s, int client, const void *buf) {
  const uint8_t *flags = buf;
  const char *row = (const char *)buf + s->nfields;
  for (int k = 0; k < s->nfields; row += s->f[k].row_bytes, k++)
    FH_TRY(fh_client_store_put_rows(s, k, client, 1, row, &flags[k]));
  return 0;
}

void fh_client_store_guest_add(fh_client_store *s, int client, const void *buf) {
  if ((client >= s->first && client < s->first + s->nlocal) || guest_of(s, client))
    store_abort(FH_ERR_RUNTIME, "guest client %d is hosted or a guest on rank %d already (programming error)", client,
                s->rank);
  if (s->nguests == s->gcap) {
    s->gcap = s->gcap ? 2 * s->gcap : 8;
    guest_vecs *ng = fh_calloc((size_t)s->gcap, sizeof *ng);
    if (s->nguests) memcpy(ng, s->guests, (size_t)s->nguests * sizeof *ng);
    free(s->guests);
    s->guests = ng;
  }
  guest_vecs *gv = &s->guests[s->nguests++];
  gv->client = client;
  gv->rows = fh_calloc(s->nfields ? (size_t)s->nfields : 1, sizeof(void *));
  const uint8_t *flags = buf;
  const char *row = (const char *)buf + s->nfields;
  for (int k = 0; k < s->nfields; row += s->f[k].row_bytes, k++)
    if (flags[k]) gv->rows[k] = memcpy(fh_malloc(s->f[k].row_bytes), row, s->f[k].row_bytes);
}

void fh_client_store_guest_pack(const fh_client_store *s, int client, void *buf) {
  const guest_vecs *gv = guest_of(s, client);
  if (!gv) store_abort(FH_ERR_RUNTIME, "client %d is no guest on rank %d (programming error)", client, s->rank);
  uint8_t *flags = buf;
  char *row = (char *)buf + s->nfields;
  for (int k = 0; k < s->nfields; row += s->f[k].row_bytes, k++) {
    flags[k] = gv->rows[k] != NULL;
    if (gv->rows[k]) memcpy(row, gv->rows[k], s->f[k].row_bytes);
    else memset(row, 0, s->f[k].row_bytes);
  }
}

void fh_client_store_guests_clear(fh_client_store *s) {
  for (int i = 0; i < s->nheld; i++)
    if (s->held[i].guest)
      store_abort(FH_ERR_RUNTIME, "guests cleared while client %d's field '%s' is held (programming error)",
                  s->held[i].client, s->f[s->held[i].field].name);
  for (int g = 0; g < s->nguests; g++) {
    for (int k = 0; k < s->nfields; k++) free(s->guests[g].rows[k]);
    free(s->guests[g].rows);
  }
  s->nguests = 0;
}

void fh_client_store_report(const fh_client_store *s, MPI_Comm comm) {
  double mine[3] = {(double)fh_client_store_bytes(s), (double)fh_client_store_file_bytes(s), 0}, sum[3], mx[3];
  for (int k = 0; k < s->nfields; k++) mine[2] += (double)s->f[k].nset;
  MPI_Reduce(mine, sum, 3, MPI_DOUBLE, MPI_SUM, 0, comm);
  MPI_Reduce(mine, mx, 3, MPI_DOUBLE, MPI_MAX, 0, comm);
  if (s->nfields == 0) return;
  char fields[512] = "";
  size_t at = 0;
  for (int k = 0; k < s->nfields && at < sizeof fields - 1; k++)
    at += (size_t)snprintf(fields + at, sizeof fields - at, "%s%s[%zu]", k ? ", " : "", s->f[k].name, s->f[k].n);
  const double mib = 1024.0 * 1024.0;
  if (s->hdf5)
    fh_info("client state (hdf5): %s; %.0f vectors of %d clients; %.2f MiB on disk per rank (max), %.2f MiB in all, "
            "%.2f MiB in memory per rank (max)", fields, sum[2], s->num_clients, mx[1] / mib, sum[1] / mib, mx[0] / mib);
  else
    fh_info("client state (memory): %s; %.0f vectors of %d clients; %.2f MiB per rank (max), %.2f MiB in all", fields,
            sum[2], s->num_clients, mx[0] / mib, sum[0] / mib);
}

/* ---- binary16 ------------------------------------------------------------------ */

uint16_t fh_f32_to_f16(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) /* inf, or NaN kept quiet with the top payload bits */
    return (uint16_t)(sign | (a == 0x7f800000u ? 0x7c00u : 0x7e00u | ((a >> 13) & 0x3ffu)));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: past the last tie, inf */
  if (a >= 0x38800000u) {                                   /* normal half: rebias 127 -> 15  */
    uint32_t h = (a >> 13) - (112u << 10), rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
  }
  if (a < 0x33000000u) return sign; /* below 2^-25 (half the smallest subnormal): 0 */
  /* subnormal half: m * 2^-24 with m = mantissa24 * 2^(e - 126) */
  uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u, shift = 126 - e; /* 14..24 */
  uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

float fh_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
  if (e == 0x1f) {
    u = sign | 0x7f800000u | (m << 13);
  } else if (e != 0) {
    u = sign | ((e + 112u) << 23) | (m << 13);
  } else if (m == 0) {
    u = sign;
  } else { /* subnormal: normalise */
    e = 113;
    while (!(m & 0x400u)) m <<= 1, e--;
    u = sign | (e << 23) | ((m & 0x3ffu) << 13);
  }
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

void fh_f32_to_f16_array(const float *x, uint16_t *h, size_t n) {
  for (size_t i = 0; i < n; i++) h[i] = fh_f32_to_f16(x[i]);
}

void fh_f16_to_f32_array(const uint16_t *h, float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = fh_f16_to_f32(h[i]);
}
