/* Decks and --set: defaults, values, overrides, every error message with its
 * FILE:LINE and suggestion, the dump round trip, origins, help, and the aborts
 * that guard against programming errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"

static const fh_key_spec run_keys[] = {
    {"run.rounds", FH_T_INT, "10", 1, 1000000, NULL, "federated rounds"},
    {"run.seed", FH_T_INT, "42", 0, 1e15, NULL, "run seed"},
    {"run.resume", FH_T_BOOL, "false", 0, 0, NULL, "resume from the last checkpoint"},
    {"run.name", FH_T_STRING, "baseline", 0, 0, NULL, "run name"},
    FH_KEYS_END};

static const fh_key_spec model_keys[] = {
    {"model.arch", FH_T_ENUM, "mlp", 0, 0, "mlp|cnn1", "architecture"},
    {"model.lr", FH_T_REAL, "0.01", 0, 1, NULL, "learning rate"},
    {"model.hidden", FH_T_INTLIST, "200,200", 1, 4096, NULL, "hidden layer widths"},
    {"model.events", FH_T_STRLIST, "", 0, 0, NULL, "PAPI events"},
    FH_KEYS_END};

static const fh_key_spec *const tables[] = {run_keys, model_keys};
#define NTABLES 2

typedef struct {
  char dir[64];
  char path[128]; /* the deck written last */
} fixture;

static int group_setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/fh_test_config_XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  *state = f;
  return 0;
}

static int group_teardown(void **state) {
  fixture *f = *state;
  DIR *dir = opendir(f->dir);
  if (dir) {
    for (struct dirent *ent; (ent = readdir(dir)) != NULL;) {
      if (ent->d_name[0] == '.') continue;
      char path[400];
      snprintf(path, sizeof path, "%s/%s", f->dir, ent->d_name);
      unlink(path);
    }
    closedir(dir);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

/* Writes text to DIR/name and returns the path (valid until the next call). */
static const char *write_deck(void **state, const char *name, const char *text) {
  fixture *f = *state;
  snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
  FILE *out = fopen(f->path, "w");
  assert_non_null(out);
  fputs(text, out);
  fclose(out);
  return f->path;
}

static fh_config *load_ok(const char *path, const char *const *sets, int nsets) {
  fh_error_clear();
  fh_config *cfg = NULL;
  int rc = fh_config_load(&cfg, path, sets, nsets, tables, NTABLES);
  if (rc != 0) fail_msg("load failed: %s", fh_error_msg());
  assert_non_null(cfg);
  return cfg;
}

/* Loading must fail with FH_ERR_CONFIG and exactly `expected`. */
static void load_fails_with(int code, const char *path, const char *const *sets, int nsets, const char *expected) {
  fh_error_clear();
  fh_config *cfg = (fh_config *)&cfg; /* must be reset to NULL */
  int rc = fh_config_load(&cfg, path, sets, nsets, tables, NTABLES);
  assert_int_equal(rc, code);
  assert_null(cfg);
  assert_string_equal(fh_error_msg(), expected);
  assert_int_equal(fh_error_code(), code);
  assert_null(strchr(fh_error_msg(), '\n'));
}

static void load_fails(const char *path, const char *const *sets, int nsets, const char *expected) {
  load_fails_with(FH_ERR_CONFIG, path, sets, nsets, expected);
}

/* The deck `text` fails with "PATH:" + expected_tail. */
static void deck_fails(void **state, const char *text, const char *expected_tail) {
  const char *path = write_deck(state, "deck.ini", text);
  char expected[1024];
  snprintf(expected, sizeof expected, "%s:%s", path, expected_tail);
  load_fails(path, NULL, 0, expected);
}

static void test_defaults(void **state) {
  (void)state;
  fh_config *cfg = load_ok(NULL, NULL, 0);
  assert_int_equal(fh_cfg_int(cfg, "run.rounds"), 10);
  assert_int_equal(fh_cfg_int(cfg, "run.seed"), 42);
  assert_int_equal(fh_cfg_bool(cfg, "run.resume"), 0);
  assert_string_equal(fh_cfg_str(cfg, "run.name"), "baseline");
  assert_string_equal(fh_cfg_str(cfg, "model.arch"), "mlp");
  assert_true(fh_cfg_real(cfg, "model.lr") == 0.01);
  long long hidden[4] = {0};
  assert_int_equal(fh_cfg_intlist(cfg, "model.hidden", hidden, 4), 2);
  assert_int_equal(hidden[0], 200);
  assert_int_equal(hidden[1], 200);
  const char *const *events = NULL;
  assert_int_equal(fh_cfg_strlist(cfg, "model.events", &events), 0);
  assert_null(fh_cfg_deck_path(cfg));
  assert_string_equal(fh_cfg_origin(cfg, "run.rounds"), "default");
  fh_config_free(cfg);
}

static void test_deck_values(void **state) {
  const char *path = write_deck(state, "values.ini",
                                "; a deck\n"
                                "[run]\n"
                                "rounds = 25\n"
                                "  seed = -0 ; indented, with an inline comment\n"
                                "resume = YES\n"
                                "name =  first try  \n"
                                "\n"
                                "# another comment\n"
                                "[ model ]\n"
                                "arch=cnn1\n"
                                "lr = 2.5e-3\n"
                                "hidden = 512 , 256,10\r\n"
                                "events = PAPI_TOT_INS, perf::TASK-CLOCK\n");
  fh_config *cfg = load_ok(path, NULL, 0);
  assert_int_equal(fh_cfg_int(cfg, "run.rounds"), 25);
  assert_int_equal(fh_cfg_int(cfg, "run.seed"), 0);
  assert_int_equal(fh_cfg_bool(cfg, "run.resume"), 1);
  assert_string_equal(fh_cfg_str(cfg, "run.name"), "first try");
  assert_string_equal(fh_cfg_str(cfg, "model.arch"), "cnn1");
  assert_true(fh_cfg_real(cfg, "model.lr") == 2.5e-3);
  long long hidden[2] = {0};
  assert_int_equal(fh_cfg_intlist(cfg, "model.hidden", hidden, 2), 3); /* copies 2 of 3 */
  assert_int_equal(hidden[0], 512);
  assert_int_equal(hidden[1], 256);
  const char *const *events = NULL;
  assert_int_equal(fh_cfg_strlist(cfg, "model.events", &events), 2);
  assert_string_equal(events[0], "PAPI_TOT_INS");
  assert_string_equal(events[1], "perf::TASK-CLOCK");
  assert_string_equal(fh_cfg_deck_path(cfg), path);
  fh_config_free(cfg);
}

static void test_bool_spellings(void **state) {
  const char *spellings[][2] = {{"true", "1"}, {"False", "0"}, {"yes", "1"}, {"NO", "0"},
                                {"on", "1"},   {"Off", "0"},   {"1", "1"},   {"0", "0"}};
  for (size_t k = 0; k < sizeof spellings / sizeof spellings[0]; k++) {
    char text[64];
    snprintf(text, sizeof text, "[run]\nresume = %s\n", spellings[k][0]);
    fh_config *cfg = load_ok(write_deck(state, "bool.ini", text), NULL, 0);
    assert_int_equal(fh_cfg_bool(cfg, "run.resume"), atoi(spellings[k][1]));
    fh_config_free(cfg);
  }
}

static void test_set_overrides_deck(void **state) {
  const char *path = write_deck(state, "deck.ini", "[run]\nrounds = 25\nseed = 7\n");
  const char *sets[] = {"run.rounds=30", " model.hidden = 64 ", "model.arch=cnn1", "run.rounds=31",
                        "model.events="};
  fh_config *cfg = load_ok(path, sets, 5);
  assert_int_equal(fh_cfg_int(cfg, "run.rounds"), 31); /* the last --set wins */
  assert_int_equal(fh_cfg_int(cfg, "run.seed"), 7);
  long long hidden[4];
  assert_int_equal(fh_cfg_intlist(cfg, "model.hidden", hidden, 4), 1);
  assert_int_equal(hidden[0], 64);
  assert_string_equal(fh_cfg_str(cfg, "model.arch"), "cnn1");
  assert_int_equal(fh_cfg_strlist(cfg, "model.events", NULL), 0);
  fh_config_free(cfg);
}

static void test_origins(void **state) {
  const char *path = write_deck(state, "origin.ini", "[run]\n\nrounds = 25\nseed = 7\n[model]\nlr = 0.5\n");
  const char *sets[] = {"run.seed=8"};
  fh_config *cfg = load_ok(path, sets, 1);
  char expected[256];
  snprintf(expected, sizeof expected, "%s:3", path);
  assert_string_equal(fh_cfg_origin(cfg, "run.rounds"), expected);
  snprintf(expected, sizeof expected, "%s:6", path);
  assert_string_equal(fh_cfg_origin(cfg, "model.lr"), expected);
  assert_string_equal(fh_cfg_origin(cfg, "run.seed"), "--set");
  assert_string_equal(fh_cfg_origin(cfg, "model.arch"), "default");
  fh_config_free(cfg);
}

static void test_missing_deck(void **state) {
  fixture *f = *state;
  char path[160], expected[256];
  snprintf(path, sizeof path, "%s/no_such_deck.ini", f->dir);
  snprintf(expected, sizeof expected, "%s: cannot open deck: No such file or directory", path);
  load_fails(path, NULL, 0, expected);
}

static void test_unknown_key_suggests(void **state) {
  deck_fails(state, "[run]\nrounds = 5\n\nround = 5\n",
             "4: unknown key 'round' in section [run] (did you mean 'run.rounds'?)");
  /* A key in the wrong section points at the section that has it. */
  deck_fails(state, "[run]\nrounds = 5\n[model]\n; comment\nseed = 3\n",
             "5: unknown key 'seed' in section [model] (did you mean 'run.seed'?)");
}

static void test_unknown_key_without_suggestion(void **state) {
  deck_fails(state, "[run]\nzzzzzzzz = 5\n", "2: unknown key 'zzzzzzzz' in section [run]");
  assert_null(strstr(fh_error_msg(), "did you mean"));
}

static void test_unknown_section(void **state) {
  deck_fails(state, "; comment\n\n[rn]\nrounds = 5\n", "3: unknown section [rn] (did you mean [run]?)");
  /* Reported at the header even when no key follows it. */
  deck_fails(state, "[run]\nrounds = 5\n[modle]\n", "3: unknown section [modle] (did you mean [model]?)");
  deck_fails(state, "[run]\n[xyzzyq]\n", "2: unknown section [xyzzyq]");
  assert_null(strstr(fh_error_msg(), "did you mean"));
}

static void test_key_outside_section(void **state) {
  deck_fails(state, "; top\nrounds = 5\n[run]\n",
             "2: key 'rounds' is outside any section (did you mean 'rounds' under [run]?)");
  deck_fails(state, "qqqqqqq = 5\n", "1: key 'qqqqqqq' is outside any section (put it under its [section])");
}

static void test_wrong_types(void **state) {
  deck_fails(state, "[run]\nrounds = ten\n", "2: run.rounds = 'ten' is not an integer");
  deck_fails(state, "[run]\nrounds = 10abc\n", "2: run.rounds = '10abc' is not an integer");
  deck_fails(state, "[run]\nrounds = 1.5\n", "2: run.rounds = '1.5' is not an integer");
  deck_fails(state, "[run]\nrounds =\n", "2: run.rounds = '' is not an integer");
  deck_fails(state, "[run]\nrounds = 10 # ten\n",
             "2: run.rounds = '10 # ten' is not an integer (comments after a value start with ';', not '#')");
  deck_fails(state, "[model]\nlr = fast\n", "2: model.lr = 'fast' is not a number");
  deck_fails(state, "[model]\nlr = 0.1x\n", "2: model.lr = '0.1x' is not a number");
  deck_fails(state, "[model]\nlr = nan\n", "2: model.lr = 'nan' is not a finite number");
  deck_fails(state, "[run]\nresume = maybe\n",
             "2: run.resume = 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)");
  deck_fails(state, "[model]\n\n\narch = mpl\n",
             "4: model.arch = 'mpl' is not one of mlp|cnn1 (did you mean 'mlp'?)");
  deck_fails(state, "[model]\narch = MLP\n", "2: model.arch = 'MLP' is not one of mlp|cnn1 (did you mean 'mlp'?)");
  deck_fails(state, "[model]\narch = transformer\n", "2: model.arch = 'transformer' is not one of mlp|cnn1");
  deck_fails(state, "[model]\nhidden = 200,x\n", "2: model.hidden = '200,x': element 'x' is not an integer");
  deck_fails(state, "[model]\nhidden = 200,,3\n",
             "2: model.hidden = '200,,3' has an empty element (write e.g. '1,2'; an empty value is an empty list)");
  deck_fails(state, "[model]\nevents = A B\n",
             "2: model.events = 'A B': element 'A B' contains a space (separate elements with commas)");
}

static void test_out_of_range(void **state) {
  deck_fails(state, "[run]\nrounds = 0\n", "2: run.rounds = 0 is out of range [1, 1000000]");
  deck_fails(state, "[run]\nrounds = 1000001\n", "2: run.rounds = 1000001 is out of range [1, 1000000]");
  deck_fails(state, "[run]\nrounds = 99999999999999999999\n",
             "2: run.rounds = 99999999999999999999 is out of range [1, 1000000]");
  deck_fails(state, "[model]\nlr = 2.5\n", "2: model.lr = 2.5 is out of range [0, 1]");
  deck_fails(state, "[model]\nlr = -1e-9\n", "2: model.lr = -1e-9 is out of range [0, 1]");
  deck_fails(state, "[model]\nhidden = 200, 0\n", "2: model.hidden = '200, 0': element 0 is out of range [1, 4096]");
  /* Bounds are inclusive. */
  fh_config *cfg = load_ok(write_deck(state, "edge.ini", "[run]\nrounds = 1000000\n[model]\nlr = 1\nhidden = 4096,1\n"),
                           NULL, 0);
  assert_int_equal(fh_cfg_int(cfg, "run.rounds"), 1000000);
  assert_true(fh_cfg_real(cfg, "model.lr") == 1.0);
  fh_config_free(cfg);
}

static void test_deck_syntax(void **state) {
  deck_fails(state, "[run]\nrounds = 5\nbad line\n", "3: expected 'key = value' or '[section]', found 'bad line'");
  deck_fails(state, "[run\nrounds = 5\n", "1: section header '[run' has no closing ']'");
  deck_fails(state, "[run]\nrounds = 5\nseed = 1\nrounds = 6\n",
             "4: run.rounds is given twice in the deck (first on line 2); keep one");
  /* The first error wins, whichever kind it is. */
  deck_fails(state, "[run]\nrounds = x\nbad line\n[nope]\n", "2: run.rounds = 'x' is not an integer");
  deck_fails(state, "[run]\nbad line\nrounds = x\n", "2: expected 'key = value' or '[section]', found 'bad line'");
  /* A line longer than libinih's buffer: read all the same, comments too. */
  char deck[700];
  snprintf(deck, sizeof deck, "[run]\n; %0300d\nname = %0250d ; a comment\n", 3, 7);
  fh_config *cfg = load_ok(write_deck(state, "long.ini", deck), NULL, 0);
  assert_int_equal(strlen(fh_cfg_str(cfg, "run.name")), 250);
  fh_config_free(cfg);
  snprintf(deck, sizeof deck, "[run]\nrounds = 5\n%0300d\n", 7);
  char tail[400];
  snprintf(tail, sizeof tail, "3: expected 'key = value' or '[section]', found '%061d...'", 0);
  deck_fails(state, deck, tail);
}

static void test_set_errors(void **state) {
  (void)state;
  const char *bad_int[] = {"run.rounds=abc"};
  load_fails(NULL, bad_int, 1, "--set run.rounds=abc: run.rounds = 'abc' is not an integer");
  const char *no_eq[] = {"foo"};
  load_fails_with(FH_ERR_USAGE, NULL, no_eq, 1, "--set foo: expected section.key=value");
  const char *no_dot[] = {"rounds=5"};
  load_fails_with(FH_ERR_USAGE, NULL, no_dot, 1, "--set rounds=5: expected section.key=value (did you mean 'run.rounds'?)");
  const char *typo[] = {"run.round=5"};
  load_fails(NULL, typo, 1, "--set run.round=5: unknown key 'run.round' (did you mean 'run.rounds'?)");
  const char *bad_section[] = {"rn.rounds=5"};
  load_fails(NULL, bad_section, 1, "--set rn.rounds=5: unknown key 'rn.rounds' (did you mean 'run.rounds'?)");
  const char *far[] = {"run.qqqqqqqq=5"};
  load_fails(NULL, far, 1, "--set run.qqqqqqqq=5: unknown key 'run.qqqqqqqq'");
  const char *range[] = {"model.lr=3"};
  load_fails(NULL, range, 1, "--set model.lr=3: model.lr = 3 is out of range [0, 1]");
  const char *comment[] = {"run.name=a ;b"};
  load_fails(NULL, comment, 1,
             "--set run.name=a ;b: run.name = 'a ;b' cannot be written in a deck: ';' after a space starts a comment");
  const char *newline[] = {"run.name=a\nb"};
  fh_error_clear();
  fh_config *cfg = NULL;
  assert_int_equal(fh_config_load(&cfg, NULL, newline, 1, tables, NTABLES), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "control character"));
  /* The first failing --set is the one reported. */
  const char *two[] = {"run.rounds=7", "run.seed=x", "run.rounds=y"};
  load_fails(NULL, two, 3, "--set run.seed=x: run.seed = 'x' is not an integer");
}

static void test_deck_error_before_sets(void **state) {
  const char *path = write_deck(state, "deck.ini", "[run]\nrounds = x\n");
  const char *sets[] = {"foo"};
  char expected[256];
  snprintf(expected, sizeof expected, "%s:2: run.rounds = 'x' is not an integer", path);
  load_fails(path, sets, 1, expected);
}

static void test_dump_round_trip(void **state) {
  const char *path = write_deck(state, "deck.ini",
                                "[model]\nhidden = 64 , 32\nlr = 0.1\nevents = A,B::c\n[run]\nname = x=y:z\n");
  const char *sets[] = {"run.rounds=77", "run.resume=on", "model.arch=cnn1", "run.seed=123456789012"};
  fh_config *cfg = load_ok(path, sets, 4);
  char *dump = fh_config_dump(cfg);
  /* Sections in table order, keys in table order, canonical values. */
  const char *expected =
      "[run]\nrounds = 77\nseed = 123456789012\nresume = true\nname = x=y:z\n"
      "\n[model]\narch = cnn1\nlr = 0.1\nhidden = 64,32\nevents = A,B::c\n";
  assert_string_equal(dump, expected);

  const char *again_path = write_deck(state, "dump.ini", dump);
  fh_config *again = load_ok(again_path, NULL, 0);
  char *dump2 = fh_config_dump(again);
  assert_string_equal(dump2, dump);
  assert_int_equal(fh_cfg_int(again, "run.rounds"), 77);
  assert_int_equal(fh_cfg_int(again, "run.seed"), 123456789012LL);
  assert_int_equal(fh_cfg_bool(again, "run.resume"), 1);
  assert_string_equal(fh_cfg_str(again, "run.name"), "x=y:z");
  assert_true(fh_cfg_real(again, "model.lr") == fh_cfg_real(cfg, "model.lr"));
  const char *const *events;
  assert_int_equal(fh_cfg_strlist(again, "model.events", &events), 2);
  assert_string_equal(events[1], "B::c");
  free(dump2);
  fh_config_free(again);
  free(dump);
  fh_config_free(cfg);

  /* Empty values and reals that need 17 digits survive too. */
  const char *odd[] = {"model.events=", "model.hidden=", "run.name=", "model.lr=0.30000000000000004"};
  cfg = load_ok(NULL, odd, 4);
  dump = fh_config_dump(cfg);
  again = load_ok(write_deck(state, "dump2.ini", dump), NULL, 0);
  assert_int_equal(fh_cfg_intlist(again, "model.hidden", NULL, 0), 0);
  assert_int_equal(fh_cfg_strlist(again, "model.events", NULL), 0);
  assert_string_equal(fh_cfg_str(again, "run.name"), "");
  assert_true(fh_cfg_real(again, "model.lr") == 0.30000000000000004);
  assert_true(fh_cfg_real(again, "model.lr") != 0.3);
  dump2 = fh_config_dump(again);
  assert_string_equal(dump2, dump);
  free(dump2);
  free(dump);
  fh_config_free(again);
  fh_config_free(cfg);
}

static void test_help(void **state) {
  (void)state;
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  assert_non_null(out);
  fh_config_write_help(out, tables, NTABLES);
  fclose(out);
  assert_non_null(strstr(text, "[run]\n"));
  assert_non_null(strstr(text, "[model]\n"));
  assert_true(strstr(text, "[run]\n") < strstr(text, "[model]\n"));
  /* Every key line has its help text starting in the same column. */
  const char *helps[] = {"federated rounds", "run seed", "learning rate", "PAPI events", "architecture"};
  long column = -1;
  for (size_t k = 0; k < sizeof helps / sizeof helps[0]; k++) {
    const char *at = strstr(text, helps[k]);
    assert_non_null(at);
    const char *line = at;
    while (line > text && line[-1] != '\n') line--;
    if (column < 0) column = at - line;
    assert_int_equal(at - line, column);
  }
  const char *rounds = strstr(text, "  rounds ");
  assert_non_null(rounds);
  const char *eol = strchr(rounds, '\n');
  char line[256];
  snprintf(line, sizeof line, "%.*s", (int)(eol - rounds), rounds);
  assert_non_null(strstr(line, " int "));
  assert_non_null(strstr(line, " 10 "));
  assert_non_null(strstr(line, "[1, 1000000]"));
  assert_non_null(strstr(text, "mlp|cnn1"));
  assert_non_null(strstr(text, "[0, 1]"));
  free(text);
}

/* ---- programming errors abort ------------------------------------------------ */

typedef void (*misuse_fn)(void);

static void assert_aborts(misuse_fn fn) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    freopen("/dev/null", "w", stderr);
    fn();
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void read_unregistered(void) {
  fh_config *cfg = NULL;
  fh_config_load(&cfg, NULL, NULL, 0, tables, NTABLES);
  fh_cfg_int(cfg, "run.no_such_key");
}

static void read_wrong_type(void) {
  fh_config *cfg = NULL;
  fh_config_load(&cfg, NULL, NULL, 0, tables, NTABLES);
  fh_cfg_real(cfg, "run.rounds");
}

static void read_strlist_as_str(void) {
  fh_config *cfg = NULL;
  fh_config_load(&cfg, NULL, NULL, 0, tables, NTABLES);
  fh_cfg_str(cfg, "model.events");
}

static void declare_twice(void) {
  static const fh_key_spec other[] = {{"run.rounds", FH_T_INT, "3", 1, 5, NULL, "again"}, FH_KEYS_END};
  const fh_key_spec *const both[] = {run_keys, other};
  fh_config *cfg = NULL;
  fh_config_load(&cfg, NULL, NULL, 0, both, 2);
}

static void bad_default(void) {
  static const fh_key_spec bad[] = {{"x.n", FH_T_INT, "0", 1, 5, NULL, "out of its own range"}, FH_KEYS_END};
  const fh_key_spec *const one[] = {bad};
  fh_config *cfg = NULL;
  fh_config_load(&cfg, NULL, NULL, 0, one, 1);
}

static void bad_enum_default(void) {
  static const fh_key_spec bad[] = {{"x.e", FH_T_ENUM, "c", 0, 0, "a|b", "not a choice"}, FH_KEYS_END};
  const fh_key_spec *const one[] = {bad};
  fh_config_print_help(one, 1);
}

static void test_programming_errors_abort(void **state) {
  (void)state;
  assert_aborts(read_unregistered);
  assert_aborts(read_wrong_type);
  assert_aborts(read_strlist_as_str);
  assert_aborts(declare_twice);
  assert_aborts(bad_default);
  assert_aborts(bad_enum_default);
}

static void test_same_table_twice_and_null_tables(void **state) {
  (void)state;
  const fh_key_spec *const list[] = {run_keys, NULL, run_keys, model_keys};
  fh_config *cfg = NULL;
  fh_error_clear();
  assert_int_equal(fh_config_load(&cfg, NULL, NULL, 0, list, 4), 0);
  assert_int_equal(fh_cfg_int(cfg, "run.rounds"), 10);
  fh_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_deck_values),
      cmocka_unit_test(test_bool_spellings),
      cmocka_unit_test(test_set_overrides_deck),
      cmocka_unit_test(test_origins),
      cmocka_unit_test(test_missing_deck),
      cmocka_unit_test(test_unknown_key_suggests),
      cmocka_unit_test(test_unknown_key_without_suggestion),
      cmocka_unit_test(test_unknown_section),
      cmocka_unit_test(test_key_outside_section),
      cmocka_unit_test(test_wrong_types),
      cmocka_unit_test(test_out_of_range),
      cmocka_unit_test(test_deck_syntax),
      cmocka_unit_test(test_set_errors),
      cmocka_unit_test(test_deck_error_before_sets),
      cmocka_unit_test(test_dump_round_trip),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_programming_errors_abort),
      cmocka_unit_test(test_same_table_twice_and_null_tables),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
