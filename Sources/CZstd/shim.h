#ifndef ENVMOUNT_CZSTD_SHIM_H
#define ENVMOUNT_CZSTD_SHIM_H
#include <zstd.h>
#endif
