/* Subcommands: each takes argv with argv[0] = its name and returns the exit code
 * (0 ok, 1 failure, 2 bad command line). */
#ifndef BWT_CLI_COMMANDS_H
#define BWT_CLI_COMMANDS_H

int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);
int cmd_geometry(int argc, char **argv);
int cmd_ablate(int argc, char **argv);
int cmd_dynamics(int argc, char **argv);
int cmd_lm(int argc, char **argv);
/* bwt lm tokenize, one of cmd_lm's subcommands (cli/cmd_lm_tokenize.c). */
int cmd_lm_tokenize(int argc, char **argv);
/* bwt lm init (cli/cmd_lm_init.c) and bwt lm sula (cli/cmd_lm_sula.c). */
int cmd_lm_init(int argc, char **argv);
int cmd_lm_sula(int argc, char **argv);
/* bwt lm geometry and bwt lm intervene (cli/cmd_lm_geometry.c). */
int cmd_lm_geometry(int argc, char **argv);
int cmd_lm_intervene(int argc, char **argv);
/* bwt lm protocol (cli/cmd_lm_protocol.c): all of the above over several models, one table. */
int cmd_lm_protocol(int argc, char **argv);

#endif
