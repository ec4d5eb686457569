/* Ablations (SPEC.md §5): remove one component of a transformer at a time and measure how far the
 * model moves from the exact posterior. Components: each head (its attention weights masked to 0),
 * each block's attention branch, its MLP branch, and the whole block (both bypassed). The masked heads'
 * output bias (the O projection's) stays, so masking every head of a block equals bypassing its
 * attention only when that bias is zero. */
#ifndef BWT_LAB_ABLATE_H
#define BWT_LAB_ABLATE_H

#include <stdint.h>

#include "bwt/model.h"
#include "bwt/task.h"

/* The branch ablations of each block, in the order of branch_dmae's columns. */
typedef enum { BWT_ABLATE_ATTN, BWT_ABLATE_MLP, BWT_ABLATE_BLOCK, BWT_ABLATE_BRANCHES } bwt_ablate_branch;

typedef struct {
  int L, NH;
  double base_mae, base_kl;     /* the intact model, bits */
  double *head_dmae, *head_dkl; /* (L,NH) change when the head is masked */
  double *branch_dmae, *branch_dkl; /* (L,3): attention zeroed, MLP zeroed, block bypassed */
  int critical_layer, critical_head; /* the head whose removal raises the entropy MAE most */
  double top_share;   /* its share of the summed positive head ΔMAE (1 = all the damage in one head) */
  int heads_for_80;   /* fewest heads that together carry 80% of that damage */
} bwt_ablation;

/* Evaluates model on n_seqs held-out sequences of the stream seed, intact and with each component
 * removed (the model's switches are restored afterwards). progress, if not NULL, hears each of the
 * n evaluations. */
bwt_status bwt_ablate(bwt_model *model, const bwt_task *task, uint64_t seed, int n_seqs, int batch,
                      bwt_ablation *out, void (*progress)(void *ctx, int i, int n), void *ctx);
void bwt_ablation_free(bwt_ablation *a);
char *bwt_ablation_to_json(const bwt_ablation *a);
/* A CSV table: component,layer,head,delta_entropy_mae_bits,delta_kl_bits. */
bwt_status bwt_ablation_write_csv(const char *path, const bwt_ablation *a);
/* The ΔMAE heatmap (layers × heads, attention, MLP, block) as dir/ablation.{png,svg}. */
bwt_status bwt_ablation_figure(const bwt_ablation *a, const char *dir);

#endif
