"""A fedhpc run's rounds as the engine draws them, without running it: which
clients train in round t, and how many training rows each Synthetic client has.

The engine draws both from Philox4x32-10 streams keyed by the run seed
(src/core/rng.c); this module repeats the same draws in Python so that
analysis/cluster_model.py can replay a deck's rounds on any rank count:

  sampled(t)   src/fl/round.c fh_run_sample: stream (seed, FH_RNG_SAMPLING,
               none, t) with t from 0, Floyd's algorithm over the K training clients, sorted
  n_train(k)   src/data/synthetic.c: stream (seed, FH_RNG_DATA, k, none),
               n_k = floor(lognormal(mu, sigma)) + min_samples (capped), of
               which lround(test_fraction * n_k) (at least 1, at most
               n_k - 1) are the client's test rows

Only what the cost model needs is repeated: sample counts, not samples. Held-out
clients (eval.holdout_clients) are not handled. tests/analysis/
test_cluster_model.sh checks both draws against a real run's profile.h5 (its
analytic FLOPs per rank and round are epochs x rows x FLOPs per row summed
over the rank's sampled clients)."""

import math

MASK32 = 0xFFFFFFFF
NONE = 0xFFFFFFFF
# src/core/rng.h: purposes of the streams
RNG_SAMPLING = 1
RNG_DATA = 3


def philox4x32_10(ctr, key):
    """One Philox4x32-10 block: ctr [4] x key [2] (uint32) -> 4 uint32."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        hi0, lo0 = p0 >> 32, p0 & MASK32
        hi1, lo1 = p1 >> 32, p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + 0x9E3779B9) & MASK32
        k1 = (k1 + 0xBB67AE85) & MASK32
    return [c0, c1, c2, c3]


class Stream:
    """fh_rng: counter (0, purpose, client, round) under key = the 64-bit seed."""

    def __init__(self, seed, purpose, client, rnd):
        self.key = [seed & MASK32, (seed >> 32) & MASK32]
        self.ctr = [0, purpose & MASK32, client & MASK32, rnd & MASK32]
        self.buf = []
        self.spare = None

    def u32(self):
        if not self.buf:
            self.buf = philox4x32_10(self.ctr, self.key)
            self.ctr[0] = (self.ctr[0] + 1) & MASK32
        return self.buf.pop(0)

    def u64(self):
        hi = self.u32()
        return (hi << 32) | self.u32()

    def uniform(self):
        return (self.u64() >> 11) * 2.0 ** -53

    def below(self, n):
        """Lemire's multiply-shift with rejection, as fh_rng_below."""
        m = self.u32() * n
        low = m & MASK32
        if low < n:
            threshold = ((1 << 32) - n) % n
            while low < threshold:
                m = self.u32() * n
                low = m & MASK32
        return m >> 32

    def normal(self):
        """Box-Muller with the spare kept, as fh_rng_normal."""
        if self.spare is not None:
            s, self.spare = self.spare, None
            return s
        u1, u2 = self.uniform(), self.uniform()
        u1 = max(u1, 1e-300)
        rad, ang = math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2
        self.spare = rad * math.sin(ang)
        return rad * math.cos(ang)


def sample_sorted(stream, n, m):
    """Floyd's algorithm: m distinct of 0..n-1, ascending (fh_rng_sample_sorted)."""
    seen, out = set(), []
    for j in range(n - m, n):
        t = stream.below(j + 1)
        if t in seen:
            t = j
        seen.add(t)
        out.append(t)
    return sorted(out)


def sampled_count(K, clients_per_round, client_fraction):
    """fh_run_sampled_count: clients that train per round."""
    m = clients_per_round if clients_per_round > 0 else round_half_away(client_fraction * K)
    return int(min(max(m, 1), K))


def round_half_away(x):
    """C's llround/lround: halves away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def sampled(seed, K, m, t):
    """Client ids of round t, ascending. t counts from 0 (the engine's loop
    index: metrics.h5's round t + 1, profile.h5's row t)."""
    return sample_sorted(Stream(seed, RNG_SAMPLING, NONE, t), K, m)


def synthetic_rows(seed, K, mu=4.0, sigma=2.0, min_samples=50, max_samples=0, test_fraction=0.2):
    """([K] training rows, [K] test rows) of the Synthetic clients (defaults:
    the engine's)."""
    rows, tests = [], []
    for k in range(K):
        r = Stream(seed, RNG_DATA, k, NONE)
        n = math.floor(math.exp(mu + sigma * r.normal())) + min_samples
        if max_samples > 0 and n > max_samples:
            n = max_samples
        test = min(max(round_half_away(test_fraction * n), 1), n - 1)
        rows.append(n - test)
        tests.append(test)
    return rows, tests


def deck_rounds(cfg):
    """A resolved deck (ConfigParser of a run's config.ini) -> dict with seed,
    K, m, epochs, rows [K] (training rows per client), test_rows [K]. Raises ValueError naming
    the key it cannot replay."""
    get = lambda key, fb: cfg.get(*key.split("."), fallback=fb)  # noqa: E731
    if get("data.source", "synthetic") != "synthetic":
        raise ValueError("data.source = %s: only synthetic clients are replayed "
                         "(pool sources: read partition.h5's counts)" % get("data.source", ""))
    if float(get("eval.holdout_clients", "0")) > 0:
        raise ValueError("eval.holdout_clients > 0 is not replayed")
    if int(get("train.iterations", "0")) > 0:
        raise ValueError("train.iterations > 0 is not replayed (cost is not rows x epochs)")
    seed = int(get("run.seed", "1"))
    K = int(get("run.clients", "0"))
    m = sampled_count(K, int(get("run.clients_per_round", "0")), float(get("run.client_fraction", "0.1")))
    rows, tests = synthetic_rows(seed, K, float(get("data.synthetic_size_mu", "4.0")),
                                float(get("data.synthetic_size_sigma", "2.0")),
                                int(get("data.synthetic_min_samples", "50")),
                                int(get("data.synthetic_max_samples", "0")),
                                float(get("data.test_fraction", "0.2")))
    return dict(seed=seed, K=K, m=m, epochs=int(get("train.epochs", "1")), rows=rows, test_rows=tests)
