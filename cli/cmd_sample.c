/* bwt sample: sequences with their exact posteriors as JSONL, for use from other frameworks. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/sample_export.h"
#include "commands.h"
#include "options.h"

int cmd_sample(int argc, char **argv) {
  run_options o;
  run_options_default(&o);
  int count = 10, batch = 256;
  uint64_t seed = 1;
  char out[OPT_STRING_MAX] = "-";
  cli_option opts[64];
  int n = task_options(opts, &o);
  opts[n++] = (cli_option){"n", OPT_INT, &count, "sequences to write"};
  opts[n++] = (cli_option){"seed", OPT_U64, &seed, "seed of the stream (batch i uses bwt_hash2(seed, i))"};
  opts[n++] = (cli_option){"batch", OPT_INT, &batch, "sequences drawn per batch (changes which sequences a seed gives)"};
  opts[n++] = (cli_option){"out", OPT_STRING, out, "output file (- = standard output)"};
  cli_spec spec = {"sample", "[options]",
                   "Writes sequences of a wind tunnel as JSON lines: tokens, and for every supervised\n"
                   "position its index, the sampled target and the exact posterior over the classes.",
                   opts, n, 0, 0};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (count < 1 || batch < 1) {
    fprintf(stderr, "bwt sample: --n and --batch must be >= 1\n");
    return 2;
  }
  bwt_task *task = NULL;
  if (bwt_task_create(&task, &o.cfg.task) != BWT_STATUS_OK) return cli_error("sample") + 1; /* a bad command line */
  FILE *f = strcmp(out, "-") == 0 ? stdout : fopen(out, "w");
  if (!f) {
    fprintf(stderr, "bwt sample: cannot write %s: %s\n", out, strerror(errno));
    bwt_task_free(task);
    return 1;
  }
  bwt_batch b;
  memset(&b, 0, sizeof b);
  bwt_status s = bwt_batch_alloc(&b, task, batch < count ? batch : count);
  for (int i = 0, done = 0; s == BWT_STATUS_OK && done < count; i++) {
    uint64_t bseed = bwt_hash2(seed, (uint64_t)i);
    s = bwt_task_sample(task, bseed, &b);
    int keep = count - done < b.B ? count - done : b.B, full = b.B;
    b.B = keep;
    if (s == BWT_STATUS_OK) s = bwt_batch_write_jsonl(f, task, &b, bseed, done);
    b.B = full;
    done += keep;
  }
  int to_stdout = f == stdout;
  if ((to_stdout ? fflush(f) : fclose(f)) != 0 && s == BWT_STATUS_OK)
    s = bwt_fail(BWT_STATUS_IO, "cannot write %s", to_stdout ? "to standard output" : out);
  rc = s == BWT_STATUS_OK ? 0 : cli_error("sample");
  bwt_batch_free(&b);
  bwt_task_free(task);
  return rc;
}
