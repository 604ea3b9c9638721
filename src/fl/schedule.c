/* run.schedule = balanced: the round's clients dealt to ranks by cost, their
 * rows and state moving with them (interface and rules in schedule.h). */
#include "fl/schedule.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

/* ---- the assignment ------------------------------------------------------------ */

double fh_lpt_makespan(const fh_lpt_problem *p, const int *exec) {
  double *load = fh_calloc((size_t)p->nranks, sizeof *load), mk = 0;
  for (int j = 0; j < p->m; j++)
    load[exec[j]] += p->cost[j] + (exec[j] != p->host[j] && p->move ? p->move[j] : 0);
  for (int r = 0; r < p->nranks; r++)
    if (load[r] > mk) mk = load[r];
  free(load);
  return mk;
}

static const fh_lpt_problem *sort_p; /* qsort has no context argument */
static int by_cost_desc(const void *a, const void *b) {
  const int i = *(const int *)a, j = *(const int *)b;
  if (sort_p->cost[i] != sort_p->cost[j]) return sort_p->cost[i] > sort_p->cost[j] ? -1 : 1;
  return (sort_p->id[i] > sort_p->id[j]) - (sort_p->id[i] < sort_p->id[j]);
}

/* One pass over the clients in LPT order into exec: a client stays home
 * while its host's load stays within bound (bound < 0: never, plain LPT);
 * otherwise it goes to the rank where it ends first, moves counted (ties: the
 * host, then the lowest rank). load [nranks] is zeroed here. */
static void deal(const fh_lpt_problem *p, const int *order, double bound, double *load, int *exec) {
  memset(load, 0, (size_t)p->nranks * sizeof *load);
  for (int i = 0; i < p->m; i++) {
    const int j = order[i], h = p->host[j];
    const int home_ok = !p->can || p->can[h];
    if (home_ok && bound >= 0 && load[h] + p->cost[j] <= bound) {
      exec[j] = h;
      load[h] += p->cost[j];
      continue;
    }
    int best = home_ok ? h : -1;
    double best_end = home_ok ? load[h] + p->cost[j] : 0;
    for (int r = 0; r < p->nranks; r++) {
      if (r == h || (p->can && !p->can[r])) continue;
      const double end = load[r] + p->cost[j] + (p->move ? p->move[j] : 0);
      if (best < 0 || end < best_end) best = r, best_end = end;
    }
    exec[j] = best;
    load[best] = best_end;
  }
}

static int moves(const fh_lpt_problem *p, const int *exec) {
  int n = 0;
  for (int j = 0; j < p->m; j++) n += exec[j] != p->host[j];
  return n;
}

/* Over 80 lines, on purpose: the three candidates (plain LPT, home first
 * under LPT's makespan, static) and the choice between them read as one
 * rule; the passes are deal's. */
double fh_lpt_assign(const fh_lpt_problem *p, int *exec) {
  if (p->m <= 0) return 0;
  int *order = fh_malloc((size_t)p->m * sizeof *order);
  int *alt = fh_malloc((size_t)p->m * sizeof *alt);
  double *load = fh_calloc((size_t)p->nranks, sizeof *load);
  for (int j = 0; j < p->m; j++) order[j] = j;
  sort_p = p;
  qsort(order, (size_t)p->m, sizeof *order, by_cost_desc);
  /* A: plain LPT; then, cheapest first, a moved client goes back home where
   * that keeps the makespan */
  deal(p, order, -1, load, exec);
  double mk = 0;
  for (int r = 0; r < p->nranks; r++)
    if (load[r] > mk) mk = load[r];
  for (int i = p->m - 1; i >= 0; i--) {
    const int j = order[i], h = p->host[j];
    if (exec[j] == h || (p->can && !p->can[h]) || load[h] + p->cost[j] > mk) continue;
    load[exec[j]] -= p->cost[j] + (p->move ? p->move[j] : 0);
    load[h] += p->cost[j];
    exec[j] = h;
  }
  mk = fh_lpt_makespan(p, exec);
  /* B: home first while the host stays within A's makespan: as short a
   * round or shorter (then it is taken), usually with fewer moves */
  deal(p, order, mk, load, alt);
  const double mk_alt = fh_lpt_makespan(p, alt);
  if (mk_alt < mk || (mk_alt == mk && moves(p, alt) <= moves(p, exec))) {
    memcpy(exec, alt, (size_t)p->m * sizeof *exec);
    mk = mk_alt;
  }
  /* static, when dealing does not pay */
  for (int j = 0; j < p->m; j++) alt[j] = p->host[j];
  const double mk_static = fh_lpt_makespan(p, alt);
  if (mk >= mk_static) {
    memcpy(exec, alt, (size_t)p->m * sizeof *exec);
    mk = mk_static;
  }
  free(order);
  free(alt);
  free(load);
  return mk;
}

/* ---- the schedule in a run -------------------------------------------------------- */

enum { TAG_IN = 0x5348, TAG_OUT = 0x5349 };
#define HEADER_INTS 4 /* train n, test n, train generated, train weight_skip */
#define ALIGN 64      /* each array of a moved client's bundle starts on 64 bytes */

/* Prior estimates before a round has measured them (guesses; they only decide
 * the first dealt round): 1 GFLOP/s of training per rank, 1 GB/s of moving. */
#define PRIOR_SEC_PER_FLOP 1e-9
#define PRIOR_SEC_PER_BYTE 1e-9

struct fh_schedule {
  int active;
  int rank, nranks, K, dim;
  int *train_n, *test_n;     /* [K] every client's rows (FedGC's included)        */
  double flops_per_sample;   /* forward + backward of the run's model              */
  long long fixed_samples;   /* train.iterations x train.batch_size, or 0: epochs x n */
  int epochs;
  size_t state_bytes;        /* fh_client_store_packed_bytes                       */
  double sec_per_cost;       /* measured seconds per unit of cost (a FLOP)         */
  double sec_per_byte;       /* measured, or 1 / run.schedule_bandwidth            */
  int fixed_bandwidth, measured_bw;
  uint8_t *can;              /* [nranks] ranks that train                          */
  /* the round */
  int cap;
  int *host, *exec;          /* [cap]                                              */
  double *cost, *move;       /* [cap]                                              */
  char **buf;                /* [cap] a moved client's bundle (in) and state (out) */
  uint8_t *added;            /* [cap] 1: a guest installed here this round         */
  MPI_Request *req;          /* [nreq] the round's messages (1 GiB pieces)          */
  int nreq;
  double t_compute, cost_done, t_in, t_move; /* this rank                           */
  double bytes_in, bytes_moved, moved;       /* every rank alike                    */
  double out[3];             /* clients, bytes, seconds of the last dealt round     */
  /* over the run, in cost units: the estimated slowest rank under static and
   * under the deal, the mean rank; clients, bytes and seconds moved */
  double est_static, est_dealt, est_mean, sum_moved, sum_bytes, sum_seconds;
  double comp_max, comp_mean; /* measured: sums over rounds of the slowest and the
                                 mean rank's time training clients          */
  int rounds;
};

static size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Offsets in a moved client's bundle: header, train x, train y, test x,
 * test y, state; returns its size. */
static size_t bundle_layout(const fh_schedule *s, int k, size_t off[6]) {
  const size_t d = (size_t)s->dim, ntr = (size_t)s->train_n[k], nte = (size_t)s->test_n[k];
  off[0] = 0;
  off[1] = align_up(HEADER_INTS * sizeof(int32_t));
  off[2] = align_up(off[1] + ntr * d * sizeof(float));
  off[3] = align_up(off[2] + ntr * sizeof(int32_t));
  off[4] = align_up(off[3] + nte * d * sizeof(float));
  off[5] = align_up(off[4] + nte * sizeof(int32_t));
  return off[5] + s->state_bytes;
}

void fh_schedule_create(fh_schedule **out, fh_run *run) {
  fh_schedule *s = fh_calloc(1, sizeof *s);
  *out = s;
  const fh_config *cfg = run->cfg;
  const int balanced = fh_cfg_enum(cfg, "run.schedule") == 1; /* static|balanced */
  if (balanced && run->schedule_static && run->rank == 0)
    fh_info("run.schedule = balanced: %s, so every client trains on its host (as static)", run->schedule_static);
  s->active = balanced && run->nranks > 1 && !run->schedule_static;
  if (!s->active) return;
  s->rank = run->rank;
  s->nranks = run->nranks;
  s->K = run->map.num_clients;
  s->dim = run->data->dim;
  /* every client's rows, from its host: [K] each (blocks in rank order) */
  int *counts = fh_malloc((size_t)s->nranks * sizeof(int)), *displs = fh_malloc((size_t)s->nranks * sizeof(int));
  for (int r = 0; r < s->nranks; r++) fh_client_block(&run->map, r, &displs[r], &counts[r]);
  int *mine = fh_malloc((size_t)(run->nlocal ? 2 * run->nlocal : 1) * sizeof(int));
  for (int i = 0; i < run->nlocal; i++) mine[i] = run->data->clients[i].train.n;
  for (int i = 0; i < run->nlocal; i++) mine[run->nlocal + i] = run->data->clients[i].test.n;
  s->train_n = fh_malloc((size_t)s->K * sizeof(int));
  s->test_n = fh_malloc((size_t)s->K * sizeof(int));
  MPI_Allgatherv(mine, run->nlocal, MPI_INT, s->train_n, counts, displs, MPI_INT, run->comm);
  MPI_Allgatherv(mine + run->nlocal, run->nlocal, MPI_INT, s->test_n, counts, displs, MPI_INT, run->comm);
  free(mine);
  free(counts);
  free(displs);
  s->flops_per_sample = fh_model_flops_forward(run->model, 1) + fh_model_flops_backward(run->model, 1);
  if (s->flops_per_sample <= 0) s->flops_per_sample = 1;
  const long long iters = fh_cfg_int(cfg, "train.iterations");
  s->fixed_samples = iters > 0 ? iters * fh_cfg_int(cfg, "train.batch_size") : 0;
  s->epochs = (int)fh_cfg_int(cfg, "train.epochs");
  s->state_bytes = fh_client_store_packed_bytes(run->state);
  s->sec_per_cost = PRIOR_SEC_PER_FLOP;
  const double bw = fh_cfg_real(cfg, "run.schedule_bandwidth");
  s->fixed_bandwidth = bw > 0;
  s->sec_per_byte = bw > 0 ? 1.0 / bw : PRIOR_SEC_PER_BYTE;
  s->can = fh_malloc((size_t)s->nranks);
  for (int r = 0; r < s->nranks; r++) s->can[r] = !(run->map.dedicated_server && r == 0);
}

void fh_schedule_free(fh_schedule *s) {
  if (!s) return;
  for (int j = 0; j < s->cap; j++) free(s->buf[j]);
  free(s->buf);
  free(s->req);
  free(s->host);
  free(s->exec);
  free(s->cost);
  free(s->move);
  free(s->added);
  free(s->train_n);
  free(s->test_n);
  free(s->can);
  free(s);
}

int fh_schedule_active(const fh_schedule *s) { return s && s->active; }

void fh_schedule_moved(const fh_schedule *s, double *clients, double *bytes, double *seconds) {
  *clients = s->active ? s->out[0] : 0;
  *bytes = s->active ? s->out[1] : 0;
  *seconds = s->active ? s->out[2] : 0;
}

/* The round's assignment of sampled [m] into s->exec (every rank alike). */
static void plan(fh_schedule *s, const fh_run *run, const int *sampled, int m) {
  if (m > s->cap) {
    for (int j = 0; j < s->cap; j++) free(s->buf[j]);
    free(s->buf), free(s->host), free(s->exec), free(s->cost), free(s->move), free(s->added);
    s->cap = m;
    s->buf = fh_calloc((size_t)m, sizeof *s->buf);
    s->host = fh_malloc((size_t)m * sizeof(int));
    s->exec = fh_malloc((size_t)m * sizeof(int));
    s->cost = fh_malloc((size_t)m * sizeof(double));
    s->move = fh_malloc((size_t)m * sizeof(double));
    s->added = fh_malloc((size_t)m);
  }
  for (int j = 0; j < m; j++) {
    const int k = sampled[j];
    size_t off[6];
    const double samples = s->fixed_samples > 0 ? (double)s->fixed_samples : (double)s->epochs * s->train_n[k];
    s->host[j] = fh_client_owner(&run->map, k);
    s->cost[j] = samples * s->flops_per_sample;
    /* rows and state out, state back: seconds, in units of cost */
    const double bytes = (double)bundle_layout(s, k, off) + (double)s->state_bytes;
    s->move[j] = bytes * s->sec_per_byte / s->sec_per_cost;
  }
  fh_lpt_problem p = {.m = m, .id = sampled, .cost = s->cost, .host = s->host, .move = s->move,
                      .nranks = s->nranks, .can = s->can};
  s->est_dealt += fh_lpt_assign(&p, s->exec);
  s->est_static += fh_lpt_makespan(&p, s->host);
  double total = 0;
  int workers = 0;
  for (int j = 0; j < m; j++) total += s->cost[j];
  for (int r = 0; r < s->nranks; r++) workers += s->can[r];
  s->est_mean += total / (workers ? workers : 1);
  s->rounds++;
}

/* MPI counts are int: a buffer in pieces of at most 1 GiB, each its own
 * message (a pair's messages of one tag arrive in order), posted at
 * s->req[*nr..]; *nr grows by the pieces. */
static void post(fh_schedule *s, int *nr, void *buf, size_t bytes, int peer, int tag, int send, MPI_Comm comm) {
  const size_t piece = (size_t)1 << 30;
  const int n = bytes ? (int)((bytes + piece - 1) / piece) : 1;
  if (*nr + n > s->nreq) {
    s->nreq = 2 * (*nr + n);
    MPI_Request *grown = fh_malloc((size_t)s->nreq * sizeof *grown);
    if (*nr) memcpy(grown, s->req, (size_t)*nr * sizeof *grown); /* handles of pending requests */
    free(s->req);
    s->req = grown;
  }
  for (int i = 0; i < n; i++) {
    const size_t off = (size_t)i * piece;
    const int c = (int)(bytes - off < piece ? bytes - off : piece);
    if (send) MPI_Isend((char *)buf + off, c, MPI_BYTE, peer, tag, comm, &s->req[(*nr)++]);
    else MPI_Irecv((char *)buf + off, c, MPI_BYTE, peer, tag, comm, &s->req[(*nr)++]);
  }
}

/* Host side: client k's bundle (rows as the host holds them, then its state). */
static int pack_bundle(const fh_schedule *s, fh_run *run, int k, char *b) {
  size_t off[6];
  bundle_layout(s, k, off);
  const fh_client_data *cd = &run->data->clients[k - run->first_client];
  const size_t d = (size_t)s->dim;
  int32_t head[HEADER_INTS] = {cd->train.n, cd->test.n, cd->train.generated, cd->train.weight_skip};
  memcpy(b, head, sizeof head);
  if (cd->train.n) memcpy(b + off[1], cd->train.x, (size_t)cd->train.n * d * sizeof(float));
  if (cd->train.n) memcpy(b + off[2], cd->train.y, (size_t)cd->train.n * sizeof(int32_t));
  if (cd->test.n) memcpy(b + off[3], cd->test.x, (size_t)cd->test.n * d * sizeof(float));
  if (cd->test.n) memcpy(b + off[4], cd->test.y, (size_t)cd->test.n * sizeof(int32_t));
  return fh_client_store_pack(run->state, k, b + off[5]);
}

/* Executing side: the guest's data pointing into its bundle; its state into
 * the store as a guest. */
static void unpack_bundle(const fh_schedule *s, fh_run *run, int k, char *b, fh_client_data *cd) {
  size_t off[6];
  bundle_layout(s, k, off);
  int32_t head[HEADER_INTS];
  memcpy(head, b, sizeof head);
  memset(cd, 0, sizeof *cd);
  cd->id = k;
  cd->train = (fh_split){.n = head[0], .x = (float *)(b + off[1]), .y = (int32_t *)(b + off[2]),
                         .generated = head[2], .weight_skip = head[3]};
  cd->test = (fh_split){.n = head[1], .x = (float *)(b + off[3]), .y = (int32_t *)(b + off[4])};
  /* the train splits' augmentation is the rank's own, built from the deck */
  if (fh_augment_active(&run->data->augment)) cd->train.augment = &run->data->augment;
  fh_client_store_guest_add(run->state, k, b + off[5]);
}

/* The rows and state of this round's moved clients, host -> executing rank.
 * Returns the requests posted into s->req. */
static int exchange_in(fh_schedule *s, fh_run *run, const int *sampled, int m, int *rc) {
  int nr = 0;
  for (int j = 0; j < m; j++) { /* receives first: every send has a place to go */
    if (s->exec[j] != s->rank || s->host[j] == s->rank) continue;
    size_t off[6];
    const size_t bytes = bundle_layout(s, sampled[j], off);
    free(s->buf[j]);
    s->buf[j] = fh_malloc(bytes ? bytes : 1);
    post(s, &nr, s->buf[j], bytes, s->host[j], TAG_IN, 0, run->comm);
  }
  for (int j = 0; j < m; j++) {
    if (s->host[j] != s->rank || s->exec[j] == s->rank) continue;
    size_t off[6];
    const size_t bytes = bundle_layout(s, sampled[j], off);
    free(s->buf[j]);
    s->buf[j] = fh_malloc(bytes ? bytes : 1);
    const int r = pack_bundle(s, run, sampled[j], s->buf[j]);
    if (r && !*rc) *rc = r;
    post(s, &nr, s->buf[j], bytes, s->exec[j], TAG_IN, 1, run->comm);
  }
  return nr;
}

/* The moved clients' state back, executing rank -> host, into the host's
 * store. The host's wait for it is not counted as moving (it waits for the
 * executing rank's clients: imbalance). */
static int exchange_out(fh_schedule *s, fh_run *run, const int *sampled, int m, double *t_move) {
  int nr = 0, ns, rc = 0;
  double t0 = MPI_Wtime();
  for (int j = 0; j < m; j++)
    if (s->host[j] == s->rank && s->exec[j] != s->rank)
      post(s, &nr, s->buf[j], s->state_bytes, s->exec[j], TAG_OUT, 0, run->comm);
  ns = nr;
  for (int j = 0; j < m; j++) {
    if (s->exec[j] != s->rank || s->host[j] == s->rank) continue;
    size_t off[6];
    bundle_layout(s, sampled[j], off);
    char *st = s->buf[j] + off[5]; /* the guest's state where it came in */
    if (s->added[j]) fh_client_store_guest_pack(run->state, sampled[j], st); /* else unchanged: it never ran */
    post(s, &nr, st, s->state_bytes, s->host[j], TAG_OUT, 1, run->comm);
  }
  MPI_Waitall(nr - ns, s->req + ns, MPI_STATUSES_IGNORE);
  *t_move += MPI_Wtime() - t0;
  MPI_Waitall(ns, s->req, MPI_STATUSES_IGNORE);
  t0 = MPI_Wtime();
  for (int j = 0; j < m; j++) {
    if (s->host[j] != s->rank || s->exec[j] == s->rank) continue;
    const int r = fh_client_store_unpack(run->state, sampled[j], s->buf[j]);
    if (r && !rc) rc = r;
  }
  *t_move += MPI_Wtime() - t0;
  return rc;
}

/* Over 80 lines, on purpose: the round's protocol in its order (plan, moves
 * in, own clients, guests, moves out) reads as one sequence; its pieces are
 * exchange_in, unpack_bundle and exchange_out. */
int fh_schedule_local_updates(fh_schedule *s, fh_run *run, const int *sampled, int m, fh_schedule_client_fn fn,
                              void *ctx) {
  fh_client_store_guests_clear(run->state);
  plan(s, run, sampled, m);
  s->t_compute = s->cost_done = s->t_in = s->t_move = 0;
  s->bytes_in = s->bytes_moved = s->moved = 0;
  memset(s->added, 0, (size_t)m);
  for (int j = 0; j < m; j++)
    if (s->exec[j] != s->host[j]) {
      size_t off[6];
      const double in = (double)bundle_layout(s, sampled[j], off);
      s->moved += 1;
      s->bytes_in += in;
      s->bytes_moved += in + (double)s->state_bytes;
    }

  int rc = 0;
  double t0 = MPI_Wtime();
  const int nr = exchange_in(s, run, sampled, m, &rc);
  MPI_Waitall(nr, s->req, MPI_STATUSES_IGNORE);
  s->t_in = MPI_Wtime() - t0;
  s->t_move = s->t_in;

  /* its own clients first, then its guests, each in id order */
  for (int pass = 0; pass < 2; pass++)
    for (int j = 0; j < m && rc == 0; j++) {
      if (s->exec[j] != s->rank || (s->host[j] == s->rank) != (pass == 0)) continue;
      const int k = sampled[j];
      fh_client_data guest;
      const fh_client_data *cd = &run->data->clients[k - run->first_client];
      if (pass == 1) {
        t0 = MPI_Wtime();
        unpack_bundle(s, run, k, s->buf[j], &guest);
        s->added[j] = 1;
        cd = &guest;
        s->t_move += MPI_Wtime() - t0;
      }
      t0 = MPI_Wtime();
      rc = fn(ctx, j, cd);
      s->t_compute += MPI_Wtime() - t0;
      s->cost_done += s->cost[j];
    }
  const int r = exchange_out(s, run, sampled, m, &s->t_move);
  return rc ? rc : r;
}

void fh_schedule_round_end(fh_schedule *s, MPI_Comm comm) {
  if (!s->active) return;
  /* every rank's numbers, combined in rank order on every rank (an allreduce
   * of doubles need not give every rank the same bits, and the next round's
   * assignment must be the same everywhere) */
  double mine[4] = {s->t_compute, s->cost_done, s->t_in, s->t_move};
  double *all = fh_malloc((size_t)4 * s->nranks * sizeof(double));
  MPI_Allgather(mine, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, comm);
  double compute = 0, cost = 0, in_max = 0, move_max = 0, comp_max = 0;
  for (int r = 0; r < s->nranks; r++) {
    compute += all[4 * r], cost += all[4 * r + 1];
    if (all[4 * r] > comp_max) comp_max = all[4 * r];
    if (all[4 * r + 2] > in_max) in_max = all[4 * r + 2];
    if (all[4 * r + 3] > move_max) move_max = all[4 * r + 3];
  }
  free(all);
  int workers = 0;
  for (int r = 0; r < s->nranks; r++) workers += s->can[r];
  s->comp_max += comp_max;
  s->comp_mean += compute / (workers ? workers : 1);
  if (compute > 0 && cost > 0) s->sec_per_cost = compute / cost;
  /* per byte moved: the slowest rank's time moving in, which also holds its
   * wait for a partner that came late (skew, not bandwidth): the least over
   * the rounds so far is the estimate (the prior until the first) */
  if (!s->fixed_bandwidth && s->bytes_in > 0 && in_max > 0) {
    const double spb = in_max / s->bytes_in;
    if (!s->measured_bw || spb < s->sec_per_byte) s->sec_per_byte = spb;
    s->measured_bw = 1;
  }
  s->out[0] = s->moved;
  s->out[1] = s->bytes_moved;
  s->out[2] = move_max;
  s->sum_moved += s->moved, s->sum_bytes += s->bytes_moved, s->sum_seconds += move_max;
}

void fh_schedule_report(const fh_schedule *s, int rank) {
  if (!s->active || rank != 0 || s->rounds == 0 || s->est_mean <= 0) return;
  fh_info("run.schedule = balanced over %d rounds: estimated local max/mean %.3f (static: %.3f) from the cost model, "
          "measured %.3f (time training clients, moves and waits left out); moved %.0f clients, %.2f MB, %.3f s",
          s->rounds, s->est_dealt / s->est_mean, s->est_static / s->est_mean,
          s->comp_mean > 0 ? s->comp_max / s->comp_mean : 1.0, s->sum_moved, s->sum_bytes / 1e6, s->sum_seconds);
}
