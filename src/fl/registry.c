/* The algorithms and the add-ons fedhpc knows: one line each. */
#include <stdio.h>
#include <string.h>

#include "fl/addon.h"
#include "fl/addons/fedgc.h"
#include "fl/addons/lips.h"
#include "fl/addons/membership.h"
#include "fl/addons/pretrain.h"
#include "fl/algorithm.h"

extern const fh_algorithm fh_alg_fedavg;
extern const fh_algorithm fh_alg_fedprox;
extern const fh_algorithm fh_alg_perfedavg;
extern const fh_algorithm fh_alg_scaffold;
extern const fh_algorithm fh_alg_local;
extern const fh_algorithm fh_alg_fstcbdg;
extern const fh_algorithm fh_alg_augfl;
extern const fh_algorithm fh_alg_pfedafm;
extern const fh_algorithm fh_alg_standalone;
extern const fh_algorithm fh_alg_lg_fedavg;
extern const fh_algorithm fh_alg_fml;
extern const fh_algorithm fh_alg_fedkd;
extern const fh_algorithm fh_alg_fedproto;
extern const fh_algorithm fh_alg_fedgh;
extern const fh_algorithm fh_alg_fd;

static const fh_algorithm *const registry[] = {
    &fh_alg_fedavg,
    &fh_alg_fedprox,
    &fh_alg_perfedavg,
    &fh_alg_scaffold,
    &fh_alg_local,
    &fh_alg_fstcbdg,
    &fh_alg_augfl,
    &fh_alg_pfedafm,
    &fh_alg_standalone,
    &fh_alg_lg_fedavg,
    &fh_alg_fml,
    &fh_alg_fedkd,
    &fh_alg_fedproto,
    &fh_alg_fedgh,
    &fh_alg_fd,
};
#define NBUILTIN ((int)(sizeof registry / sizeof registry[0]))

/* An executable may add algorithms of its own: a NULL-terminated list under
 * this name, linked in beside the library (the test build's tiny algorithm,
 * tests/alg/tiny.c). The fedhpc binary defines none. */
extern const fh_algorithm *const fh_extra_algorithms[] __attribute__((weak));

static int nextra(void) {
  int n = 0;
  if (fh_extra_algorithms)
    while (fh_extra_algorithms[n]) n++;
  return n;
}

int fh_algorithm_count(void) { return NBUILTIN + nextra(); }
const fh_algorithm *fh_algorithm_at(int i) { return i < NBUILTIN ? registry[i] : fh_extra_algorithms[i - NBUILTIN]; }

const fh_algorithm *fh_algorithm_find(const char *name) {
  for (int i = 0; i < fh_algorithm_count(); i++)
    if (strcmp(fh_algorithm_at(i)->name, name) == 0) return fh_algorithm_at(i);
  return NULL;
}

const char *fh_algorithm_choices(void) {
  static char buf[1024];
  if (buf[0] == '\0')
    for (int i = 0; i < fh_algorithm_count(); i++) {
      if (i) strcat(buf, "|");
      strcat(buf, fh_algorithm_at(i)->name);
    }
  return buf;
}

void fh_algorithm_names_with(unsigned flags, const char *conj, char *buf, size_t len) {
  int n = 0, total = 0;
  for (int i = 0; i < fh_algorithm_count(); i++) total += (fh_algorithm_at(i)->flags & flags) == flags;
  buf[0] = '\0';
  for (int i = 0; i < fh_algorithm_count(); i++) {
    const fh_algorithm *a = fh_algorithm_at(i);
    if ((a->flags & flags) != flags) continue;
    const size_t at = strlen(buf);
    if (n == 0) snprintf(buf + at, len - at, "%s", a->name);
    else if (n == total - 1) snprintf(buf + at, len - at, " %s %s", conj, a->name);
    else snprintf(buf + at, len - at, ", %s", a->name);
    n++;
  }
}

/* ---- add-ons (fl/addon.h): the order in which their hooks run ---------------- */

static const fh_addon *const addons[] = {
    &fh_addon_pretrain,
    &fh_addon_lips,
    &fh_addon_fedgc,
    &fh_addon_membership,
};
#define NADDON ((int)(sizeof addons / sizeof addons[0]))

int fh_addon_count(void) { return NADDON; }
const fh_addon *fh_addon_at(int i) { return addons[i]; }

/* ---- the listing ------------------------------------------------------------------ */

static void write_case(FILE *out, const fh_test_case *c, const char *alg) {
  static const char *const check_names[] = {"ranks", "resume", "resume-short", "deck"};
  fprintf(out, "%s|%s|", c->name, c->algorithm ? c->algorithm : alg);
  for (int b = 0, n = 0; b < 4; b++)
    if (c->checks & (1u << b)) fprintf(out, "%s%s", n++ ? "," : "", check_names[b]);
  fprintf(out, "|%s|%s\n", c->settings ? c->settings : "", c->measured ? c->measured : "");
}

void fh_registry_write(FILE *out, int tests) {
  if (!tests) {
    fprintf(out, "algorithms (run.algorithm):\n");
    for (int i = 0; i < fh_algorithm_count(); i++) {
      const fh_algorithm *a = fh_algorithm_at(i);
      fprintf(out, "  %-12s %s", a->name, a->summary);
      if (a->flags & FH_ALG_LOCAL_SGD) fprintf(out, " [local SGD]");
      if (a->flags & FH_ALG_SAMPLE_WEIGHTS) fprintf(out, " [sample weights]");
      if (a->flags & FH_ALG_SERVER_ANY_RANK) fprintf(out, " [server step on every rank]");
      if (a->flags & FH_ALG_NO_GLOBAL) fprintf(out, " [no global model]");
      if (a->flags & FH_ALG_NO_GLOBAL_MODEL) fprintf(out, " [payload is no model]");
      fprintf(out, "\n");
    }
    fprintf(out, "add-ons (on top of any algorithm):\n");
    for (int i = 0; i < fh_addon_count(); i++)
      fprintf(out, "  %-12s %s\n", fh_addon_at(i)->name, fh_addon_at(i)->summary);
    return;
  }
  for (int i = 0; i < fh_algorithm_count(); i++) {
    const fh_algorithm *a = fh_algorithm_at(i);
    if (!a->tests) {
      const fh_test_case dflt = {a->name, FH_TEST_RANKS | FH_TEST_RESUME | FH_TEST_DECK, "", "", NULL};
      write_case(out, &dflt, a->name);
    }
    for (const fh_test_case *c = a->tests; c && c->name; c++) write_case(out, c, a->name);
  }
  for (int i = 0; i < fh_addon_count(); i++)
    for (const fh_test_case *c = fh_addon_at(i)->tests; c && c->name; c++) write_case(out, c, "fedavg");
}
