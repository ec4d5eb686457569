#include "commands.h"
int cmd_lm_sula(int argc, char **argv) { (void)argc; (void)argv; return 2; }
