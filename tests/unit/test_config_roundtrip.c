/* Whatever fedhpc writes into a run's config.ini it reads back: every key of
 * every table at a long value (strings and lists of 3000 characters, numbers
 * at the end of their range, the longest choice), dumped, loaded from the
 * dump as a deck, and dumped again, gives the same text and the same values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmd/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "fl/run.h"

static char *long_value(const fh_key_spec *k) {
  char *v = calloc(4000, 1);
  switch (k->type) {
    case FH_T_INT: snprintf(v, 4000, "%lld", (long long)k->max); break;
    case FH_T_REAL: snprintf(v, 4000, "%.17g", k->max); break;
    case FH_T_BOOL: snprintf(v, 4000, "false"); break;
    case FH_T_ENUM: { /* the longest choice */
      const char *c = k->choices, *best = c;
      size_t bl = strcspn(c, "|");
      for (const char *p = c; *p;) {
        size_t l = strcspn(p, "|");
        if (l > bl) best = p, bl = l;
        p += l + (p[l] == '|');
      }
      snprintf(v, 4000, "%.*s", (int)bl, best);
      break;
    }
    case FH_T_INTLIST: {
      size_t n = 0;
      while (n < 3000) n += (size_t)snprintf(v + n, 4000 - n, "%s%lld", n ? "," : "", (long long)k->max);
      break;
    }
    case FH_T_STRLIST: {
      size_t n = 0;
      while (n < 3000) n += (size_t)snprintf(v + n, 4000 - n, "%sPAPI_TOT_INS", n ? "," : "");
      break;
    }
    case FH_T_STRING:
      for (int i = 0; i < 3000; i++) v[i] = "abcdefghij/"[i % 11];
      break;
  }
  return v;
}

static void test_every_key_round_trips(void **state) {
  (void)state;
  fh_run_keys_prepare();
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64), nsets = 0;
  char **sets = calloc(4096, sizeof *sets);
  for (int t = 0; t < nt; t++)
    for (const fh_key_spec *k = tables[t]; k->name; k++) {
      char *v = long_value(k);
      size_t len = strlen(k->name) + strlen(v) + 2;
      sets[nsets] = malloc(len);
      snprintf(sets[nsets++], len, "%s=%s", k->name, v);
      free(v);
    }
  fh_config *a = NULL, *b = NULL;
  fh_error_clear();
  int rc = fh_config_load(&a, NULL, (const char *const *)sets, nsets, tables, nt);
  if (rc) fprintf(stderr, "load of the long values: %s\n", fh_error_msg());
  assert_int_equal(rc, 0);
  char *dump = fh_config_dump(a);
  char path[] = "/tmp/fedhpc-roundtrip-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, dump, strlen(dump)), (ssize_t)strlen(dump));
  close(fd);
  rc = fh_config_load(&b, path, NULL, 0, tables, nt);
  if (rc) fprintf(stderr, "load of the dump: %s\n", fh_error_msg());
  unlink(path);
  assert_int_equal(rc, 0);
  char *again = fh_config_dump(b);
  assert_string_equal(dump, again);
  for (int i = 0; i < nsets; i++) {
    char *eq = strchr(sets[i], '=');
    *eq = '\0';
    for (int t = 0; t < nt; t++)
      for (const fh_key_spec *k = tables[t]; k->name; k++)
        if (strcmp(k->name, sets[i]) == 0 && (k->type == FH_T_STRING || k->type == FH_T_ENUM))
          assert_string_equal(fh_cfg_str(a, k->name), fh_cfg_str(b, k->name));
    free(sets[i]);
  }
  free(sets);
  free(dump);
  free(again);
  fh_config_free(a);
  fh_config_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_key_round_trips)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
