/* A network with more logits than classes (model.outputs; the AugFL authors'
 * networks have 100 for every data set) against PyTorch
 * (tests/fixtures/outputs_torch.txt, made by make_outputs_fixtures.py): an MLP
 * 6 -> 5 -> 100 whose labels use outputs 0..9. The 90 other logits enter the
 * softmax, the loss, every gradient and the argmax as in torch (a row whose
 * largest logit is one of them counts as wrong), and two SGD steps follow
 * torch's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch_fixture.h"

#include "nn/model.h"
#include "nn/optim.h"

static torch_fixture g_fixture;

static int load_fixture(void **state) {
  (void)state;
  return torch_fixture_load(&g_fixture, FH_FIXTURES_DIR "/outputs_torch.txt");
}

static int free_fixture(void **state) {
  (void)state;
  torch_fixture_free(&g_fixture);
  return 0;
}

static double scalar(const char *name) { return fixture_get(&g_fixture, "%s", name)->v[0]; }

typedef struct {
  fh_model *m;
  int d, o, c, b;
  float *x;
  int32_t *y;
} setup;

static void load_views(fh_model *m, float *dst, const char *prefix) {
  for (int i = 0; i < fh_model_nviews(m); i++) {
    const fh_param_view *v = fh_model_view(m, i);
    const torch_tensor *t = fixture_get(&g_fixture, "%s%s", prefix, v->name);
    assert_int_equal(t->ndim, v->ndim);
    for (int k = 0; k < v->ndim; k++) assert_int_equal(t->shape[k], v->shape[k]);
    to_float(dst + v->offset, t);
  }
}

static void check_views(fh_model *m, const float *src, const char *prefix, double rtol) {
  for (int i = 0; i < fh_model_nviews(m); i++) {
    const fh_param_view *v = fh_model_view(m, i);
    char what[128];
    snprintf(what, sizeof what, "%s%s", prefix, v->name);
    assert_close(what, src + v->offset, fixture_get(&g_fixture, "%s", what), rtol);
  }
}

static void make_model(setup *s) {
  const torch_tensor *dims = fixture_get(&g_fixture, "dims");
  s->d = (int)dims->v[0];
  const int hidden[1] = {(int)dims->v[1]};
  s->o = (int)dims->v[2];
  s->c = (int)dims->v[3];
  s->b = (int)dims->v[4];
  assert_true(s->o > s->c);
  assert_int_equal(fh_model_create_mlp(&s->m, s->d, hidden, 1, s->o, s->b), 0);
  assert_int_equal(fh_model_num_classes(s->m), s->o);
  load_views(s->m, fh_model_params(s->m), "init/");
  s->x = malloc((size_t)s->b * s->d * sizeof(float));
  s->y = malloc((size_t)s->b * sizeof(int32_t));
  to_float(s->x, fixture_get(&g_fixture, "x"));
  const torch_tensor *y = fixture_get(&g_fixture, "y");
  for (int i = 0; i < s->b; i++) {
    s->y[i] = (int32_t)y->v[i];
    assert_true(s->y[i] >= 0 && s->y[i] < s->c); /* the labels name classes only */
  }
}

static void free_model(setup *s) {
  fh_model_free(s->m);
  free(s->x);
  free(s->y);
}

static void test_loss_and_gradients(void **state) {
  (void)state;
  setup s;
  make_model(&s);
  assert_close("logits", fh_model_forward(s.m, s.x, s.b, 1), fixture_get(&g_fixture, "logits"), 1e-5);
  const float loss = fh_model_loss_grad(s.m, s.x, s.y, s.b);
  assert_scalar_close("loss", loss, scalar("loss"), 1e-5);
  check_views(s.m, fh_model_grads(s.m), "grad/", 1e-5);
  /* the unlabelled outputs get a gradient (their softmax mass), not zero */
  const fh_param_view *b2 = fh_model_find_view(s.m, "fc2.bias");
  assert_non_null(b2);
  assert_true(fabsf(fh_model_grads(s.m)[b2->offset + 57]) > 1e-3f);
  free_model(&s);
}

/* argmax over all outputs: the fixture has rows whose largest logit is an
 * unlabelled output, which count as wrong. */
static void test_evaluate_argmax_over_all(void **state) {
  (void)state;
  setup s;
  make_model(&s);
  assert_true(scalar("outside") >= 1 && scalar("correct") >= 1);
  double loss_sum = 0;
  const int correct = fh_model_evaluate(s.m, s.x, s.y, s.b, &loss_sum);
  assert_int_equal(correct, (int)scalar("correct"));
  assert_scalar_close("summed loss", loss_sum, scalar("loss_sum"), 1e-5);
  free_model(&s);
}

static void test_two_sgd_steps(void **state) {
  (void)state;
  setup s;
  make_model(&s);
  const size_t n = fh_model_nparams(s.m);
  float *buf = calloc(n, sizeof(float));
  long long steps = 0;
  const fh_sgd opt = {.lr = 0.5f, .momentum = 0.9f};
  for (int k = 0; k < 2; k++) {
    fh_model_loss_grad(s.m, s.x, s.y, s.b);
    fh_sgd_step(&opt, fh_model_params(s.m), fh_model_grads(s.m), buf, n, &steps);
  }
  check_views(s.m, fh_model_params(s.m), "sgd2/", 1e-5);
  free(buf);
  free_model(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loss_and_gradients),
      cmocka_unit_test(test_evaluate_argmax_over_all),
      cmocka_unit_test(test_two_sgd_steps),
  };
  return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
