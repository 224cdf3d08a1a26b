// One line on stderr: what the loaded base takes in memory and in which storage types.
#ifndef DT_BASE_MEMORY_H
#define DT_BASE_MEMORY_H
#include "models/llama.h"

void dt_print_base_memory(const dt_llama *m);

#endif
