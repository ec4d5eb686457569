/* The single-head model of Paper II (SPEC.md §2) on the sticky Markov chain, trained by full-batch
 * gradient descent: the laboratory of the EM-vs-SGD comparison and the falsification modes
 * (SPEC.md §6). Everything is in double precision: the model is tiny and the comparisons are of
 * small loss differences.
 *
 * One sequence of T positions with inputs X (T, 20) and next-symbol targets y (T):
 *   Q = X W_Q, K = X W_K (T,10); V = X W_V (T,15); s = Q Kᵀ/√10 (causal, diagonal included);
 *   α = softmax(s); O = α V; logits = O W_O (T,8); loss = mean cross-entropy (nats).
 * No biases, no positions; weights start at 0.1·N(0,1) from the seed. */
#ifndef BWT_LAB_SINGLE_HEAD_H
#define BWT_LAB_SINGLE_HEAD_H

#include <stdint.h>

#include "bwt/status.h"

enum { SH_IN = 20, SH_QK = 10, SH_V = 15, SH_OUT = 8 };

typedef struct {
  double wq[SH_IN * SH_QK], wk[SH_IN * SH_QK]; /* (20,10) row-major */
  double wv[SH_IN * SH_V];                     /* (20,15) */
  double wo[SH_V * SH_OUT];                    /* (15,8) */
} bwt_single_head;

/* How the routing is trained (the falsification modes): the true gradient; frozen routing (W_Q and
 * W_K never change); the baseline removed (∂L/∂s_ij replaced by α_ij·b_ij); uniform attention
 * (α_ij = 1/(i+1) over the visible prefix, so W_Q and W_K play no part). */
typedef enum { BWT_ROUTING_GRADIENT, BWT_ROUTING_FROZEN, BWT_ROUTING_NO_BASELINE, BWT_ROUTING_UNIFORM } bwt_routing;
const char *bwt_routing_name(bwt_routing r);
bwt_status bwt_routing_parse(const char *s, bwt_routing *r);

void bwt_single_head_init(bwt_single_head *m, uint64_t seed);

/* The sequence and its workspace: X (T,20), y (T), and the exact posterior q (T,8) of each target. */
typedef struct bwt_sh_data bwt_sh_data;
/* Samples one sticky-chain sequence of T positions from seed. */
bwt_status bwt_sh_data_create(bwt_sh_data **out, int T, uint64_t seed);
void bwt_sh_data_free(bwt_sh_data *d);
int bwt_sh_data_len(const bwt_sh_data *d);
/* The exact posterior's cross-entropy on this sequence, mean −ln q(y_t) (nats): the floor of any
 * model of these inputs, in expectation. */
double bwt_sh_data_bayes_ce(const bwt_sh_data *d);

/* Loss (nats) and, if g is not NULL, its gradient (overwritten) under the routing mode. */
double bwt_single_head_loss(const bwt_single_head *m, bwt_sh_data *d, bwt_routing mode, bwt_single_head *g);

typedef struct {
  double entropy_mae_bits, kl_bits;   /* against the exact posterior, over the T positions */
  double pc1, spearman;               /* PCA of the head outputs O: PC1's share, Spearman(PC1, H(q)) */
} bwt_sh_report;
/* Calibration and the value manifold of m on d. */
bwt_status bwt_single_head_report(const bwt_single_head *m, bwt_sh_data *d, bwt_routing mode, bwt_sh_report *out);

/* Full-batch gradient descent: steps updates, lr on W_Q, W_K, W_O and lr_v on W_V. loss (steps+1)
 * gets the loss before each update and after the last. */
bwt_status bwt_single_head_train(bwt_single_head *m, bwt_sh_data *d, bwt_routing mode, int steps, double lr,
                                 double lr_v, double *loss);


/* One run from seed: the sequence (T positions) and the initial weights both come from it. loss
 * (steps+1) as bwt_single_head_train; report and bayes_ce (bwt_sh_data_bayes_ce) may be NULL. */
bwt_status bwt_single_head_run(int T, uint64_t seed, bwt_routing mode, int steps, double lr, double lr_v,
                               double *loss, bwt_sh_report *report, double *bayes_ce);

/* EM vs SGD (SPEC.md §3, §6): for each seed, one sequence and one initialisation shared by both arms;
 * SGD uses lr everywhere, the EM-like schedule lr_v on W_V and lr elsewhere. */
typedef struct {
  int T, steps;
  double lr, lr_v;
  bwt_routing routing;
  int n_seeds;
  const uint64_t *seeds;
} bwt_em_config;

typedef struct {
  int n_seeds, steps;
  double *sgd, *em;       /* (n_seeds, steps+1) loss curves, nats */
  double *bayes_ce;       /* (n_seeds) the exact posterior's cross-entropy on each sequence */
  double floor_nats;      /* 1.82919: a predictor that knew the last symbol */
  double sgd_mean_final;  /* mean over seeds of the SGD arm's final loss */
  int *em_cross;          /* (n_seeds) first step at which the EM arm is below sgd_mean_final; −1 never */
  double speedup;         /* steps / mean(em_cross) (NAN if a seed never crosses) */
  double speedup_mean, speedup_sd; /* of the per-seed steps / em_cross */
  double t_stat;          /* paired t of final losses (SGD − EM) over seeds */
  double p_exact;         /* two-sided exact sign-flip permutation p-value of the same differences */
  bwt_sh_report *sgd_report, *em_report; /* (n_seeds) calibration and manifold at the end */
} bwt_em_result;

/* progress, if not NULL, hears each finished arm (i of 2·n_seeds). */
bwt_status bwt_em_vs_sgd(const bwt_em_config *c, bwt_em_result *out, void (*progress)(void *ctx, int i, int n),
                         void *ctx);
void bwt_em_result_free(bwt_em_result *r);
/* The result as JSON (caller frees; NULL when out of memory), loss curves included. */
char *bwt_em_to_json(const bwt_em_config *c, const bwt_em_result *r);
/* Mean loss curves of both arms with their spread, the exact-posterior cross-entropy and the floor, as
 * dir/em_vs_sgd.{png,svg}. */
bwt_status bwt_em_figure(const bwt_em_result *r, const char *dir);

/* Falsification (SPEC.md §6): the same runs (lr, lr_v, seeds of c; c->routing ignored) under each
 * routing mode, to see whether the advantage term is needed for the loss, the calibration and the
 * value manifold. */
typedef struct {
  int n_modes, n_seeds, steps;
  bwt_routing *modes;      /* (n_modes) */
  double *loss;            /* (n_modes, n_seeds, steps+1) */
  bwt_sh_report *report;   /* (n_modes, n_seeds) at the end */
  double *bayes_ce;        /* (n_seeds) */
} bwt_falsify_result;

bwt_status bwt_falsify(const bwt_em_config *c, const bwt_routing *modes, int n_modes, bwt_falsify_result *out,
                       void (*progress)(void *ctx, int i, int n), void *ctx);
void bwt_falsify_free(bwt_falsify_result *r);
char *bwt_falsify_to_json(const bwt_em_config *c, const bwt_falsify_result *r);
/* Mean loss curve per mode, as dir/falsify.{png,svg}. */
bwt_status bwt_falsify_figure(const bwt_falsify_result *r, const char *dir);

#endif
