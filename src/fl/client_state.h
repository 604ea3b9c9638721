/* Per-client state: the vectors a stateful method keeps for each client across
 * rounds (SCAFFOLD control variates, AugFL duals, pFedAFM local models and
 * optimiser state, LIPS gradients). One store per run, on every rank; a client's
 * vectors live on the rank that hosts it. Fields are declared once (same order
 * and sizes on every rank, in the algorithm's setup) and sized on demand: a
 * client's vector is allocated the first time it is acquired, zero-filled.
 *
 * Backends (deck key state.backend): memory (default), or hdf5: one file per
 * rank under state.dir (default: the run folder), for populations whose state
 * does not fit in memory; acquire reads the client's row, release writes it
 * back when dirty. The files are scratch: they are removed when the run ends
 * (the checkpoint is what keeps state across jobs).
 *
 * Checkpoints (src/fl/checkpoint.c) write every field as one dataset [K, n] plus
 * the per-client "initialised" flags, and read them back on any rank count
 * through fh_client_store_get_rows / fh_client_store_put_rows.
 *
 * Usage in client_update:
 *   int fresh;
 *   float *ci = fh_client_store_acquire(run->state, st->c_field, c->id, &fresh);
 *   ... read/modify ci[0..n) ...
 *   FH_TRY(fh_client_store_release(run->state, st->c_field, c->id, 1));
 * Several vectors may be held at once (different fields, or different clients
 * of one field), up to FH_STATE_MAX_HELD; acquiring a held (field, client) again,
 * a client hosted elsewhere or an unknown field is a programming error and
 * aborts with a message.
 *
 * F16 fields hold IEEE binary16 bit patterns (uint16_t); convert with
 * fh_f32_to_f16 (round to nearest, ties to even, as IEEE 754 and numpy's
 * astype(float16) do; overflow to +-inf, NaN stays NaN) and fh_f16_to_f32
 * (exact). */
#ifndef FH_CLIENT_STATE_H
#define FH_CLIENT_STATE_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef enum {
  FH_STATE_F32, /* float  */
  FH_STATE_F16, /* IEEE half, uint16_t storage (LIPS gradients) */
  FH_STATE_F64, /* double */
  FH_STATE_I32, /* int32_t (counters, pseudo-label ids) */
} fh_state_type;

#define FH_STATE_MAX_HELD 16

typedef struct fh_client_store fh_client_store;

extern const fh_key_spec fh_state_keys[];

/* Collective over comm. Clients first_client .. first_client+nlocal-1 of
 * num_clients live here. run_dir: default folder of the hdf5 backend. */
int fh_client_store_create(fh_client_store **out, const fh_config *cfg, MPI_Comm comm,
                           int num_clients, int first_client, int nlocal, const char *run_dir);
void fh_client_store_free(fh_client_store *s);

/* Declares a field of n >= 1 elements per client; returns its id in *field.
 * Same calls in the same order on every rank. Name: "scaffold.c" (at most 63
 * characters, no '/'). Returns 0, or FH_ERR_OUTPUT when the hdf5 backend cannot
 * create the field's dataset. */
int fh_client_store_field(fh_client_store *s, const char *name, fh_state_type type, size_t n,
                          int *field);

/* The client's vector of the field (hosted here). *fresh = 1 when it did not
 * exist yet (then it is zero-filled; fresh may be NULL). Valid until released.
 * With the hdf5 backend a failed read aborts the run with a message (the
 * file under state.dir became unreadable). */
void *fh_client_store_acquire(fh_client_store *s, int field, int client, int *fresh);
/* Ends an acquire; dirty = 1 when the vector was modified (hdf5 backend writes
 * it back). Returns 0 or an FH_ERR_OUTPUT error. */
int fh_client_store_release(fh_client_store *s, int field, int client, int dirty);

/* For checkpoints and reports. */
int fh_client_store_nfields(const fh_client_store *s);
const char *fh_client_store_field_name(const fh_client_store *s, int field);
fh_state_type fh_client_store_field_type(const fh_client_store *s, int field);
size_t fh_client_store_field_len(const fh_client_store *s, int field);
size_t fh_client_store_bytes(const fh_client_store *s); /* resident here */
size_t fh_client_store_row_bytes(const fh_client_store *s); /* one client's vectors, every field */
size_t fh_client_store_file_bytes(const fh_client_store *s); /* hdf5 backend: on disk here */
const char *fh_client_store_backend(const fh_client_store *s); /* "memory" or "hdf5" */
size_t fh_state_type_size(fh_state_type t);                    /* bytes per element */
/* HDF5 type of a field's elements, in memory and in files (binary16 as h5py's
 * float16 layout); owned by the store module, never closed. */
hid_t fh_client_store_h5type(fh_state_type t);
/* 1 when the client (hosted here) has a vector in the field. */
int fh_client_store_initialised(const fh_client_store *s, int field, int client);

/* Rows of clients first .. first+count-1 (all hosted here, none held): get
 * copies them into buf [count, n] (zeros for clients without a vector) and
 * their flags into init [count]; put stores the rows whose init[i] is 1 (and
 * drops the vectors of clients whose init[i] is 0). Return 0 or FH_ERR_OUTPUT. */
int fh_client_store_get_rows(fh_client_store *s, int field, int first, int count, void *buf,
                             uint8_t *init);
int fh_client_store_put_rows(fh_client_store *s, int field, int first, int count, const void *buf,
                             const uint8_t *init);

/* A client's whole state (every field's row and its "initialised" flag) as
 * one buffer, for run.schedule = balanced (src/fl/schedule.c), which runs a
 * client on another rank than its host for a round. The fields are the ones
 * a checkpoint saves (same list, same rows): nothing else is per-client state.
 * Layout: nfields flag bytes, then each field's row in declaration order.
 * pack/unpack: a client hosted here (none of its vectors held), through
 * get_rows/put_rows, so the hdf5 backend reads and writes its file.
 * Guests: a client hosted elsewhere that runs here; guest_add installs its
 * state from a packed buffer (kept in memory, any backend), after which
 * acquire/release/initialised accept it like a hosted client; guest_pack
 * writes it back into a buffer; guests_clear forgets every guest (their
 * vectors stay readable until then). */
size_t fh_client_store_packed_bytes(const fh_client_store *s);
int fh_client_store_pack(fh_client_store *s, int client, void *buf);
int fh_client_store_unpack(fh_client_store *s, int client, const void *buf);
void fh_client_store_guest_add(fh_client_store *s, int client, const void *buf);
void fh_client_store_guest_pack(const fh_client_store *s, int client, void *buf);
void fh_client_store_guests_clear(fh_client_store *s);

/* Collective: rank 0 logs one line with the fields, the vectors that exist and
 * the bytes per rank (max) and in total, in memory and (hdf5) on disk. */
void fh_client_store_report(const fh_client_store *s, MPI_Comm comm);

/* IEEE binary16 <-> binary32 (see the header comment). */
uint16_t fh_f32_to_f16(float x);
float fh_f16_to_f32(uint16_t h);
void fh_f32_to_f16_array(const float *x, uint16_t *h, size_t n);
void fh_f16_to_f32_array(const uint16_t *h, float *x, size_t n);

#endif
