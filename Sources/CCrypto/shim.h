// OpenSSL's libcrypto: SHA-256 (SHA-NI accelerated) and Ed25519 signatures with PEM keys, so keys
// made by the openssl CLI work as they are. Nothing to build: the library is already on the system.
#ifndef ENVMOUNT_CCRYPTO_SHIM_H
#define ENVMOUNT_CCRYPTO_SHIM_H
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#endif
