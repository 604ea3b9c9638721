/* Checkpoints: everything a run needs to continue after round t, in one file
 * RUN/checkpoint.h5 written by one collective parallel-HDF5 write (layout in
 * docs/outputs.md):
 *   global payload, server-side vectors, round counter  (rank 0's)
 *   every client-state field as [K, n] plus per-client "initialised" flags
 *                                                       (each rank its rows)
 *   the metrics rows so far (rank 0), each rank's profile history, and the
 *   resolved config the run was started with.
 * The file is written as RUN/checkpoint.h5.tmp, flushed collectively
 * (MPI_File_sync), closed, fsynced by rank 0, and renamed over the previous
 * checkpoint, so RUN/checkpoint.h5 is always a whole checkpoint: a run
 * killed during the write resumes from the one before.
 *
 * Nothing else needs saving: every random number is drawn from a stream keyed
 * by (seed, purpose, client, round), the data are rebuilt from the deck, and
 * local optimisers start afresh every round. So a resumed run, on any rank
 * count, ends with the same model and metrics, bit for bit, as a run that was
 * never interrupted. */
#ifndef FH_CHECKPOINT_H
#define FH_CHECKPOINT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "fl/run.h"
#include "io/metrics.h"
#include "io/profile_file.h"

extern const fh_key_spec fh_checkpoint_keys[];

/* Collective, before the run is created: RUN/checkpoint.h5 must exist (else
 * FH_ERR_USAGE) and the deck must keep every key the checkpoint depends on
 * (else FH_ERR_CONFIG naming the key, its value in the checkpoint and in the
 * deck). Keys that may change: run.rounds (not below the checkpoint's round),
 * run.eval_every, run.dedicated_server, run.schedule*, output.*, checkpoint.*, profile.*,
 * state.*. *round: the rounds the checkpoint holds. */
int fh_checkpoint_check(const fh_config *cfg, const char *run_dir, MPI_Comm comm, int *round);

/* Collective: writes RUN/checkpoint.h5 after `round` completed rounds.
 * rows [nrows]: the metrics rows so far (rank 0; ignored elsewhere); hist and
 * prof: this rank's profile history and its event names; ini: the resolved
 * config. FEDHPC_TEST_KILL_IN_CHECKPOINT=t in the environment makes rank 0
 * kill itself (SIGKILL) in the middle of the write after round t: the hook the
 * tests use to show that an interrupted write leaves the previous checkpoint.
 * FEDHPC_TEST_FAIL_IN_CHECKPOINT=r makes rank r's client-state rows fail, in
 * every checkpoint write (and read, below): the hook the tests use to show that
 * an error on one rank stops every rank with that error and no hang.
 * A failed write leaves the previous checkpoint as it was. */
int fh_checkpoint_write(fh_run *run, const char *run_dir, int round, const fh_round_metrics *rows, int nrows,
                        const fh_profile_history *hist, const fh_profiler *prof, const char *ini);

/* Collective: restores run->global, every client-state field and server vector
 * from RUN/checkpoint.h5, on any rank count. Rank 0 gets the metrics rows
 * (*rows, malloc'ed, *nrows). hist (empty) gets this rank's profile rows back
 * when the checkpoint was written by as many ranks with the same events;
 * otherwise it stays empty with hist->first_round = round + 1. *round: rounds
 * done. A checkpoint whose fields, sizes or algorithm differ from the run's is
 * FH_ERR_CONFIG. Rank 0 reads the global payload and server vectors and
 * broadcasts them; each rank reads its own clients' rows. */
int fh_checkpoint_read(fh_run *run, const char *run_dir, fh_profile_history *hist, const fh_profiler *prof,
                       fh_round_metrics **rows, int *nrows, int *round);

/* The hash of one row of a checkpoint dataset (see checkpoint.c: a dataset's
 * checksum is the sum of its rows' hashes, modulo 2^64). */
uint64_t fh_checkpoint_row_hash(const void *row, size_t bytes, uint64_t index);

#endif
