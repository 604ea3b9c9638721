/* The round loop: where a round starts and ends (see src/fl/algorithm.h for
 * the data flow). Rank 0 is the server and speaks for the run. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/signals.h"
#include "core/versions.h"
#include "fl/addon.h"
#include "fl/checkpoint.h"
#include "fl/evaluate.h"
#include "fl/run.h"
#include "fl/run_folder.h"
#include "fl/schedule.h"
#include "io/metrics.h"
#include "io/model_file.h"
#include "io/profile_file.h"

/* ---- small pieces ---------------------------------------------------------- */

/* MPI counts are int: broadcast long payloads in chunks. */
static void bcast_floats(float *buf, size_t n, MPI_Comm comm) {
  const size_t chunk = (size_t)1 << 28;
  for (size_t off = 0; off < n; off += chunk)
    MPI_Bcast(buf + off, (int)(n - off < chunk ? n - off : chunk), MPI_FLOAT, 0, comm);
}

/* A restored metrics row off the evaluation schedule (round % eval_every != 0)
 * that is not this run's last can hold evaluations only from the evaluation
 * forced in the last round of the run that wrote it (a finished run, extended
 * with a larger run.rounds): they are blanked, as in a run that went straight
 * to run.rounds. Evaluation columns: all but the ones every round has. */
static void drop_forced_evaluation(fh_round_metrics *row, int eval_every, int R) {
  static const char *const every_round[] = {"round", "clients_sampled", "wall_time", "local_loss",
                                            "comm/bcast_bytes", "comm/reduce_bytes", "schedule/moved_clients",
                                            "schedule/move_bytes", "schedule/move_seconds"};
  if (row->round % eval_every == 0 || row->round == R) return;
  fh_round_metrics blank;
  fh_round_metrics_clear(&blank, row->round, row->clients);
  const fh_metric_column *cols;
  const int ncols = fh_metric_columns(&cols);
  for (int c = 0; c < ncols; c++) {
    int keep = cols[c].is_int || strncmp(cols[c].path, "time/", 5) == 0;
    for (size_t i = 0; i < sizeof every_round / sizeof every_round[0]; i++)
      if (strcmp(cols[c].path, every_round[i]) == 0) keep = 1;
    if (!keep) memcpy((char *)row + cols[c].offset, (const char *)&blank + cols[c].offset, sizeof(double));
  }
}

int fh_run_sampled_count(const fh_run *run) {
  const int K = run->map.num_clients - run->nholdout; /* held-out clients never train */
  long long m = fh_cfg_int(run->cfg, "run.clients_per_round");
  if (m <= 0) m = llround(fh_cfg_real(run->cfg, "run.client_fraction") * K);
  if (m < 1) m = 1;
  if (m > K) m = K;
  return (int)m;
}

/* S_t from the run seed: every rank draws it itself, no message needed. */
void fh_run_sample(const fh_run *run, int t, int *sampled) {
  const int K = run->map.num_clients - run->nholdout, m = fh_run_sampled_count(run);
  fh_rng srng;
  fh_rng_init(&srng, run->seed, FH_RNG_SAMPLING, FH_RNG_NONE, (uint32_t)t);
  fh_rng_sample_sorted(&srng, K, m, sampled);
  if (run->train_ids) /* positions among the training clients -> ids, still ascending */
    for (int j = 0; j < m; j++) sampled[j] = run->train_ids[sampled[j]];
}

/* ---- end-of-run summary: per phase, min/mean/max over ranks ---------------- */
static void print_summary(fh_run *run, const double *phase_total, double wall, double final_acc,
                          double best_acc, int best_round) {
  double mn[FH_NPHASES], mx[FH_NPHASES], sum[FH_NPHASES];
  MPI_Reduce(phase_total, mn, FH_NPHASES, MPI_DOUBLE, MPI_MIN, 0, run->comm);
  MPI_Reduce(phase_total, mx, FH_NPHASES, MPI_DOUBLE, MPI_MAX, 0, run->comm);
  MPI_Reduce(phase_total, sum, FH_NPHASES, MPI_DOUBLE, MPI_SUM, 0, run->comm);
  if (run->rank != 0) return;
  fh_info("done: %d rounds in %.2f s; final test accuracy %.2f%%, best %.2f%% (round %d)", run->rounds,
          wall, 100 * final_acc, 100 * best_acc, best_round);
  fh_info("time per phase over %d ranks (s):    min      mean       max   max/mean", run->nranks);
  for (int p = 0; p < FH_NPHASES; p++) {
    double mean = sum[p] / run->nranks;
    fh_info("  %-32s %8.3f  %8.3f  %8.3f   %6.2f", fh_phase_names[p], mn[p], mean, mx[p],
            mean > 0 ? mx[p] / mean : 1.0);
  }
}

/* ---- one round, in named steps ---------------------------------------------- */

/* What the steps of the loop share. */
typedef struct {
  fh_run *run;
  const char *run_dir;
  int m, R, eval_every, start;
  size_t bcast_n;
  int communicate;  /* No global model (Local): nothing is broadcast or reduced. */
  int global_model; /* the headline is the global model's accuracy, else the clients' own models' */
  int replicated;   /* one allreduce, the server step on every rank (FH_ALG_SERVER_ANY_RANK) */
  fh_metrics_file *mf;
  fh_profile_history *hist;
  fh_evaluator *ev;
  fh_accum acc;
  fh_schedule *sched; /* which rank trains each sampled client (run.schedule) */
  int *sampled;      /* [m] */
  double *ctrain;    /* [loss*w, w] per sampled slot */
  double *all_times; /* rank 0: [nranks][FH_NPHASES] */
  double phase_total[FH_NPHASES];
  double t_start, final_acc, best_acc;
  int best_round, global_in_sync;
  int t; /* the round under way, 0-based */
} loop_state;

static void loop_init(loop_state *L, fh_run *run, const char *run_dir, fh_metrics_file *mf, fh_profile_history *hist) {
  memset(L, 0, sizeof *L);
  L->run = run;
  L->run_dir = run_dir;
  L->m = fh_run_sampled_count(run);
  L->R = run->rounds;
  L->eval_every = (int)fh_cfg_int(run->cfg, "run.eval_every");
  L->bcast_n = run->bcast_n ? run->bcast_n : run->payload_n;
  L->communicate = !(run->alg->flags & FH_ALG_NO_GLOBAL);
  /* The headline accuracy: the global model's, or the clients' own models' when the
   * run has no global model of the data (Local; pFedAFM, whose payload is a part). */
  L->global_model = L->communicate && !(run->alg->flags & FH_ALG_NO_GLOBAL_MODEL);
  L->replicated = L->communicate && (run->alg->flags & FH_ALG_SERVER_ANY_RANK) && run->alg->server_step &&
                  fh_cfg_bool(run->cfg, "run.allreduce");
  L->mf = mf;
  L->hist = hist;
  fh_evaluator_create(&L->ev, run);
  fh_accum_create(&L->acc, run->payload_n, (int)fh_cfg_int(run->cfg, "run.accum_bits"), L->m);
  fh_accum_share(&L->acc, run->comm); /* ranks of one node reduce in place */
  L->sampled = fh_malloc((size_t)L->m * sizeof(int));
  L->ctrain = fh_malloc((size_t)2 * L->m * sizeof(double));
  L->all_times = run->rank == 0 ? fh_malloc((size_t)run->nranks * FH_NPHASES * sizeof(double)) : NULL;
  fh_schedule_create(&L->sched, run);
  L->t_start = MPI_Wtime();
  L->final_acc = NAN;
  L->best_acc = -1;
}

static void loop_free(loop_state *L) {
  fh_accum_destroy(&L->acc);
  fh_schedule_report(L->sched, L->run->rank);
  fh_schedule_free(L->sched);
  free(L->sampled);
  free(L->ctrain);
  fh_evaluator_free(L->ev);
  free(L->all_times);
}

/* The final and best headline accuracy so far. */
static void headline(loop_state *L, double a, int round) {
  L->final_acc = a;
  if (a > L->best_acc) L->best_acc = a, L->best_round = round;
}

/* A resumed run: the state after round L->start from RUN/checkpoint.h5, and
 * the metrics rows before it written again. */
static int resume(loop_state *L) {
  fh_run *run = L->run;
  fh_round_metrics *old = NULL;
  int nold = 0;
  int rc = fh_checkpoint_read(run, L->run_dir, L->hist, &run->prof, &old, &nold, &L->start);
  for (int i = 0; i < nold && rc == 0; i++) {
    drop_forced_evaluation(&old[i], L->eval_every, L->R);
    rc = fh_metrics_append(L->mf, &old[i]);
    if (rc == 0) rc = fh_metrics_finish_row(L->mf, old[i].phase[FH_PH_IO]);
    double a = L->global_model ? old[i].test_accuracy : old[i].personal.accuracy; /* the headline, as below */
    if (!isnan(a)) headline(L, a, old[i].round);
  }
  free(old);
  rc = fh_error_agree(run->comm, rc);
  L->global_in_sync = L->replicated; /* fh_checkpoint_read gave every rank run->global */
  if (rc == 0) fh_info("resumed from %s/checkpoint.h5 after round %d of %d", L->run_dir, L->start, L->R);
  return rc;
}

/* Sampled client j's client_update on data (its host's rows, or a copy
 * moved here by the schedule) in round L->t. */
static int one_client(void *ctx, int j, const fh_client_data *data) {
  loop_state *L = ctx;
  fh_run *run = L->run;
  const int k = L->sampled[j];
  fh_client_ctx c = {.id = k, .round = L->t, .data = data, .model = run->model};
  fh_client_report rep = {0};
  int rc = run->alg->client_update(run, &c, &L->acc, &rep);
  if (rc) fh_error_prefix("round %d, client %d: ", L->t + 1, k);
  L->ctrain[2 * j] = rep.train_loss * rep.weight;
  L->ctrain[2 * j + 1] = rep.weight;
  return rc;
}

/* Every sampled client this rank trains: its hosted ones in id order, or
 * those the balanced schedule deals it (rank-local, or collective when
 * dealt). */
static int local_updates(loop_state *L, int t) {
  fh_run *run = L->run;
  int rc = 0;
  fh_accum_zero(&L->acc);
  memset(L->ctrain, 0, (size_t)2 * L->m * sizeof(double));
  L->t = t;
  if (fh_schedule_active(L->sched)) return fh_schedule_local_updates(L->sched, run, L->sampled, L->m, one_client, L);
  for (int j = 0; j < L->m && rc == 0; j++) {
    int k = L->sampled[j];
    if (k < run->first_client || k >= run->first_client + run->nlocal) continue;
    rc = one_client(L, j, &run->data->clients[k - run->first_client]);
  }
  return rc;
}

/* Round t's training: sampling, add-ons' round_begin, broadcast, local
 * updates, reduction, server step, add-ons' round_end. Agreed. */
static int train(loop_state *L, int t, fh_round_metrics *rm) {
  fh_run *run = L->run;
  MPI_Comm comm = run->comm;
  const int is_root = run->rank == 0, m = L->m;
  fh_run_sample(run, t, L->sampled);

  int rc = fh_addons_round_begin(run, t, L->run_dir); /* agreed */
  if (rc) return rc;

  fh_prof_begin(&run->prof, FH_PH_BCAST);
  if (!L->global_in_sync && L->communicate) bcast_floats(run->global, L->bcast_n, comm);
  fh_prof_end(&run->prof, FH_PH_BCAST);

  fh_prof_begin(&run->prof, FH_PH_LOCAL);
  rc = local_updates(L, t);
  fh_prof_end(&run->prof, FH_PH_LOCAL);

  /* "reduce" includes waiting for the slowest rank: that is the imbalance. */
  fh_prof_begin(&run->prof, FH_PH_REDUCE);
  rc = fh_error_agree(comm, rc);
  if (rc == 0) fh_schedule_round_end(L->sched, comm);
  if (rc == 0) {
    if (L->replicated) fh_accum_allreduce(&L->acc, comm); /* saves the next broadcast */
    else if (L->communicate) fh_accum_reduce(&L->acc, 0, comm);
    MPI_Reduce(is_root ? MPI_IN_PLACE : L->ctrain, L->ctrain, 2 * m, MPI_DOUBLE, MPI_SUM, 0, comm);
  }
  fh_prof_end(&run->prof, FH_PH_REDUCE);
  if (rc) return rc;

  fh_prof_begin(&run->prof, FH_PH_SERVER);
  if (run->alg->server_collective) rc = run->alg->server_collective(run, &L->acc); /* every rank */
  if (L->replicated && !is_root && rc == 0) rc = run->alg->server_step(run, &L->acc); /* the same bits */
  if (is_root) {
    if (rc == 0 && run->alg->server_step) rc = run->alg->server_step(run, &L->acc);
    double wl = 0, ws = 0;
    for (int j = 0; j < m; j++) wl += L->ctrain[2 * j], ws += L->ctrain[2 * j + 1];
    rm->local_loss = ws > 0 ? wl / ws : NAN;
  }
  fh_prof_end(&run->prof, FH_PH_SERVER);
  rc = fh_error_agree(comm, rc);
  if (rc) return rc;
  rc = fh_addons_round_end(run, t, L->sampled, m, L->run_dir); /* agreed */
  if (rc) return rc;
  L->global_in_sync = L->replicated;
  return 0;
}

/* In evaluation rounds (every run.eval_every, and the last): the global
 * payload to every rank, then every evaluation mode. */
static int evaluate(loop_state *L, int t, fh_round_metrics *rm) {
  fh_run *run = L->run;
  if ((t + 1) % L->eval_every != 0 && t != L->R - 1) return 0;
  fh_prof_begin(&run->prof, FH_PH_BCAST);
  if (L->communicate && !L->global_in_sync) bcast_floats(run->global, L->bcast_n, run->comm);
  L->global_in_sync = 1;
  fh_prof_end(&run->prof, FH_PH_BCAST);
  fh_prof_begin(&run->prof, FH_PH_EVAL);
  int rc = fh_evaluate(L->ev, run, t, rm);
  fh_prof_end(&run->prof, FH_PH_EVAL);
  if (rc) return rc;
  if (run->rank == 0) /* the headline: the global model, or the clients' own without one */
    headline(L, L->global_model ? rm->test_accuracy : rm->personal.accuracy, t + 1);
  return 0;
}

/* I/O: per-phase maxima over ranks, then rank 0 writes the row; the row's
 * own I/O time is its last entry. Agreed. */
static int write_row(loop_state *L, fh_round_metrics *rm, double t_round) {
  fh_run *run = L->run;
  int rc = 0;
  fh_prof_begin(&run->prof, FH_PH_IO);
  double t_io = MPI_Wtime();
  MPI_Gather(run->prof.time, FH_NPHASES, MPI_DOUBLE, L->all_times, FH_NPHASES, MPI_DOUBLE, 0, run->comm);
  if (run->rank == 0) {
    for (int p = 0; p < FH_NPHASES; p++) {
      rm->phase[p] = 0;
      for (int r = 0; r < run->nranks; r++)
        if (L->all_times[r * FH_NPHASES + p] > rm->phase[p]) rm->phase[p] = L->all_times[r * FH_NPHASES + p];
    }
    rm->wall = MPI_Wtime() - t_round;
    rc = fh_metrics_append(L->mf, rm);
    if (rc == 0) rc = fh_metrics_finish_row(L->mf, MPI_Wtime() - t_io);
  }
  fh_prof_end(&run->prof, FH_PH_IO);
  fh_profile_history_push(L->hist, &run->prof);
  for (int p = 0; p < FH_NPHASES; p++) L->phase_total[p] += run->prof.time[p];
  return fh_error_agree(run->comm, rc);
}

/* Rank 0: the round's line (evaluations, local loss, time, ETA). */
static void print_round(const loop_state *L, int t, const fh_round_metrics *rm, double t_round) {
  const int R = L->R;
  double elapsed = MPI_Wtime() - L->t_start;
  char eta[32], evals[256];
  fh_format_eta(elapsed / (t + 1 - L->start) * (R - t - 1), eta, sizeof eta);
  if (!L->global_model && !isnan(rm->personal.accuracy))
    snprintf(evals, sizeof evals, "own models' test acc %6.2f%%", 100 * rm->personal.accuracy);
  else if (isnan(rm->test_accuracy))
    snprintf(evals, sizeof evals, "train loss      -  test acc      -");
  else
    snprintf(evals, sizeof evals, "train loss %.4f  test acc %6.2f%%", rm->train_loss, 100 * rm->test_accuracy);
  if (L->global_model && !isnan(rm->personal.accuracy))
    snprintf(evals + strlen(evals), sizeof evals - strlen(evals), "  personalised %6.2f%%",
             100 * rm->personal.accuracy);
  if (!isnan(rm->finetune.accuracy))
    snprintf(evals + strlen(evals), sizeof evals - strlen(evals), "  fine-tuned %6.2f%%", 100 * rm->finetune.accuracy);
  if (!isnan(rm->holdout.accuracy))
    snprintf(evals + strlen(evals), sizeof evals - strlen(evals), "  held-out %6.2f%%", 100 * rm->holdout.accuracy);
  fh_info("round %*d/%d  %s  local loss %.4f  %.3f s  ETA %s", (int)snprintf(NULL, 0, "%d", R), t + 1, R, evals,
          rm->local_loss, MPI_Wtime() - t_round, eta);
}

/* Round t (0-based), whole: train, evaluate, write its metrics row, print its
 * line. Non-zero: the loop stops (agreed on every rank). */
static int run_round(loop_state *L, int t) {
  fh_run *run = L->run;
  double t_round = MPI_Wtime();
  fh_profiler_reset_round(&run->prof);
  fh_round_metrics rm;
  fh_round_metrics_clear(&rm, t + 1, L->m);
  /* what travels: the payload's head to every node, the fixed-point
   * accumulator (payload and weight sum, int64) from every rank */
  rm.bcast_bytes = L->communicate && !(L->replicated && L->global_in_sync) ? (double)L->bcast_n * sizeof(float) : 0;
  rm.reduce_bytes = L->communicate ? (double)(run->payload_n + 1) * sizeof(int64_t) : 0;
  FH_TRY(train(L, t, &rm));
  fh_schedule_moved(L->sched, &rm.moved_clients, &rm.move_bytes, &rm.move_seconds);
  FH_TRY(evaluate(L, t, &rm));
  int rc = write_row(L, &rm, t_round);
  if (run->rank == 0 && rc == 0) print_round(L, t, &rm, t_round);
  return rc;
}

/* ---- the loop ---------------------------------------------------------------- */

/* Over 80 lines, on purpose: the run folder's preparation (prepare_run_dir,
 * metrics.h5 opened) and the finishing protocol (every file under a temporary
 * name until all are whole, then renamed, metrics.h5 last) stay here as one
 * block each, in the order that makes a metrics.h5 mean a complete run, until
 * they move to a file of their own; the rounds are run_round's. */
int fh_run_execute(fh_run *run, const char *run_dir_override) {
  const fh_config *cfg = run->cfg;
  MPI_Comm comm = run->comm;
  const int K = run->map.num_clients, R = run->rounds, is_root = run->rank == 0;

  char run_dir[4096];
  if (run_dir_override)
    snprintf(run_dir, sizeof run_dir, "%s", run_dir_override);
  else
    snprintf(run_dir, sizeof run_dir, "%s", run->dir);
  char *ini = fh_config_dump(cfg);
  char versions[1024];
  fh_versions_string(versions, sizeof versions);

  char dropped[512];
  fh_profiler_init(&run->prof, cfg, comm, dropped, sizeof dropped);
  if (dropped[0])
    fh_warn("this machine cannot count PAPI event(s) %s (no PMU, or unknown name: see `fedhpc info`); "
            "continuing with timers", dropped);

  fh_metrics_file mf;
  memset(&mf, 0, sizeof mf);
  int rc = 0;
  if (is_root) {
    rc = fh_run_folder_prepare(cfg, run_dir, ini, run->resume);
    if (rc == 0) rc = fh_metrics_open(&mf, run_dir, ini, versions, run->nranks, run->alg->name);
  }
  rc = fh_error_agree(comm, rc);
  if (rc) {
    free(ini);
    if (is_root) {
      fh_metrics_close(&mf, "failed");
      fh_run_folder_unlock(run_dir);
    }
    fh_profiler_finalize(&run->prof);
    return rc;
  }
  fh_profile_history hist;
  fh_profile_history_init(&hist, R, run->prof.nevents);

  fh_info("fedhpc %s: %s on %s, %d clients (%d per round), %d rounds, %d ranks", FEDHPC_VERSION,
          run->alg->name, run->data->name, K, fh_run_sampled_count(run), R, run->nranks);
  if (run->nholdout)
    fh_info("%d clients held out of training: they adapt the global model and test (eval.holdout_clients)",
            run->nholdout);
  fh_info("model %s: %zu parameters; output in %s/", fh_model_arch(run->model), fh_model_nparams(run->model),
          run_dir);
  loop_state L;
  loop_init(&L, run, run_dir, &mf, &hist);
  const double t_start = L.t_start;
  const int ck_every = (int)fh_cfg_int(cfg, "checkpoint.every");

  int stop_sig = 0, done = 0;
  if (run->resume) rc = resume(&L);
  done = L.start;

  for (int t = L.start; t < R && rc == 0; t++) {
    rc = run_round(&L, t);
    if (rc) break;
    done = t + 1;

    /* Checkpoint every ck_every rounds, and when a signal asks the run to stop
     * (the ranks agree on it here; in the last round the run just finishes). */
    stop_sig = t + 1 < R ? fh_signals_agree(comm) : 0;
    if (stop_sig || (ck_every > 0 && (t + 1) % ck_every == 0))
      rc = fh_checkpoint_write(run, run_dir, t + 1, mf.rows, mf.nrows, &hist, &run->prof, ini);
    if (stop_sig) break;
  }
  const int interrupted = rc == 0 && stop_sig;

  /* Finishing: the final files (fl/run_folder.h). */
  double wall = MPI_Wtime() - t_start;
  if (rc == 0 && !interrupted) rc = fh_addons_finish(run, run_dir); /* collective */
  rc = fh_error_agree(comm, rc);
  rc = fh_run_folder_finish(run, run_dir, &mf, &hist, rc, interrupted, stop_sig, done, ini);
  if (rc == 0 && interrupted) { /* every rank: exit FH_EXIT_REQUEUE, no error message */
    fh_info("fedhpc: stopped by %s after round %d of %d; checkpoint %s/checkpoint.h5; resume with: "
            "fedhpc run %s/config.ini --resume %s (exit code %d)",
            fh_signal_name(stop_sig), done, R, run_dir, run_dir, run_dir, FH_EXIT_REQUEUE);
    MPI_Barrier(comm); /* the line is out before any rank exits (mpirun then ends the job) */
    rc = FH_EXIT_REQUEUE;
  }
  if (rc == 0) print_summary(run, L.phase_total, wall, L.final_acc, L.best_acc, L.best_round);
  if (rc == 0) fh_client_store_report(run->state, comm);

  fh_profiler_finalize(&run->prof);
  loop_free(&L);
  fh_profile_history_free(&hist);
  free(ini);
  return rc;
}
