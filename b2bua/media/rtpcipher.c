/*
 * The RTP payload ciphers in C (docs/rtp-encryption.md; the declarations and the rules
 * are in rtpcipher.h). Every mode XORs a keystream onto the payload; the keystream of
 * modes 2 and 3 depends on the key and the packet's nonce SSRC(4) | TS(4) | SEQ(2),
 * read from the header as it is on the wire.
 *
 * - XOR: the key repeated from the first payload byte.
 * - RC4: per packet, k = BLAKE2s(key=K, data=nonce, 16-byte output) through libcrypto's
 *   BLAKE2SMAC, then RC4-drop[256] keyed with k. RC4 itself is written here (below):
 *   OpenSSL 3 keeps RC4 in its legacy provider, which a system may not ship or may
 *   forbid (FIPS configurations), and which would have to be loaded into the process's
 *   library context; the key schedule is re-run for every packet anyway, so a provider
 *   call per packet would only add dispatch to it. Checked against RFC 6229's vectors
 *   and against the `cryptography` package's ARC4 (tests/unit/test_native_cipher.py).
 * - AES128: counter mode with the counter block nonce | j (48 bits, big-endian), as
 *   ECB over the counter blocks through one EVP context kept for the cipher's life (ECB
 *   on whole blocks keeps no state between calls): no context is set up per packet.
 */
#include "rtpcipher.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/opensslv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "rtpcipher.c needs OpenSSL 3.0 or later (Debian: libssl-dev)"
#endif

#define XOR_MAX_KEY 256
#define RC4_MAX_KEY 32      /* BLAKE2s's key limit */
#define RC4_PACKET_KEY 16   /* the per-packet RC4 key: BLAKE2s with a 16-byte output */
#define RC4_DROP 256        /* keystream bytes discarded after each key schedule */
#define AES_CHUNK 32        /* counter blocks encrypted per EVP call (512 bytes) */

struct rtp_cipher {
    int mode;
    unsigned fail;                     /* failures still to inject (tests) */
    size_t keylen;
    unsigned char key[XOR_MAX_KEY];    /* XOR only */
    EVP_MAC_CTX *mac;                  /* RC4: keyed BLAKE2s */
    EVP_CIPHER_CTX *aes;               /* AES128: AES-128-ECB, no padding */
};

typedef struct {
    uint8_t s[256];
    uint8_t i, j;
} rc4_state;

static void
rc4_init(rc4_state *st, const unsigned char *key, size_t keylen)
{
    for (unsigned i = 0; i < 256; i++)
        st->s[i] = (uint8_t)i;
    uint8_t j = 0;
    for (size_t i = 0, k = 0; i < 256; i++) {
        uint8_t t = st->s[i];
        j = (uint8_t)(j + t + key[k]);
        st->s[i] = st->s[j];
        st->s[j] = t;
        if (++k == keylen)
            k = 0;
    }
    st->i = st->j = 0;
}

/* XOR the next `n` keystream bytes onto `buf` (or only advance, when `buf` is NULL).
 * Indices are bytes: their wrap-around is the algorithm's mod 256. */
static void
rc4_xor(rc4_state *st, unsigned char *buf, size_t n)
{
    uint8_t i = st->i, j = st->j;
    uint8_t *s = st->s;
    for (size_t x = 0; x < n; x++) {
        i++;
        uint8_t t = s[i];
        j = (uint8_t)(j + t);
        uint8_t u = s[j];
        s[i] = u;
        s[j] = t;
        if (buf != NULL)
            buf[x] ^= s[(uint8_t)(t + u)];
    }
    st->i = i;
    st->j = j;
}

void
rtp_rc4_keystream(const unsigned char *key, size_t keylen, unsigned char *out, size_t n)
{
    rc4_state st;
    rc4_init(&st, key, keylen);
    memset(out, 0, n);
    rc4_xor(&st, out, n);
}

static void
nonce_of(const unsigned char *packet, unsigned char nonce[10])
{
    memcpy(nonce, packet + 8, 4);      /* SSRC */
    memcpy(nonce + 4, packet + 4, 4);  /* TS */
    memcpy(nonce + 8, packet + 2, 2);  /* SEQ */
}

static int
rc4_apply(rtp_cipher *c, unsigned char *packet, size_t offset, size_t len)
{
    unsigned char nonce[10], k[RC4_PACKET_KEY];
    size_t klen = 0;
    nonce_of(packet, nonce);
    /* Re-initialised with the key the context keeps (and its 16-byte output size). */
    if (!EVP_MAC_init(c->mac, NULL, 0, NULL) || !EVP_MAC_update(c->mac, nonce, sizeof nonce)
        || !EVP_MAC_final(c->mac, k, &klen, sizeof k) || klen != sizeof k)
        return -1;
    rc4_state st;
    rc4_init(&st, k, sizeof k);
    rc4_xor(&st, NULL, RC4_DROP);
    rc4_xor(&st, packet + offset, len - offset);
    /* k and st are not wiped: they give this packet's keystream only (K stays in the MAC
     * context), and the next packet overwrites them; wiping cost ~4% of an RC4 packet. */
    return 0;
}

static int
aes_apply(rtp_cipher *c, unsigned char *packet, size_t offset, size_t len)
{
    unsigned char ks[AES_CHUNK * 16];
    unsigned char nonce[10];
    nonce_of(packet, nonce);
    unsigned char *p = packet + offset;
    size_t n = len - offset;
    uint64_t block = 0;
    while (n > 0) {
        size_t blocks = (n + 15) / 16;
        if (blocks > AES_CHUNK)
            blocks = AES_CHUNK;
        for (size_t b = 0; b < blocks; b++, block++) {
            unsigned char *ctr = ks + 16 * b;
            memcpy(ctr, nonce, 10);
            for (int x = 0; x < 6; x++)
                ctr[10 + x] = (unsigned char)(block >> (8 * (5 - x)));
        }
        int outl = 0;
        if (!EVP_EncryptUpdate(c->aes, ks, &outl, ks, (int)(blocks * 16))
            || outl != (int)(blocks * 16))
            return -1;
        size_t take = blocks * 16 < n ? blocks * 16 : n;
        for (size_t x = 0; x < take; x++)
            p[x] ^= ks[x];
        p += take;
        n -= take;
    }
    return 0;
}

static void
xor_apply(const rtp_cipher *c, unsigned char *packet, size_t offset, size_t len)
{
    const unsigned char *k = c->key;
    size_t klen = c->keylen;
    for (size_t i = offset, j = 0; i < len; i++) {
        packet[i] ^= k[j];
        if (++j == klen)
            j = 0;
    }
}

int
rtp_cipher_apply(rtp_cipher *c, unsigned char *packet, size_t offset, size_t len)
{
    if (c->fail > 0) {
        c->fail--;
        return -1;
    }
    if (offset >= len)
        return 0;  /* an empty payload stays empty */
    if (c->mode == RTPC_XOR) {
        xor_apply(c, packet, offset, len);
        return 0;
    }
    int status = c->mode == RTPC_RC4 ? rc4_apply(c, packet, offset, len)
                                     : aes_apply(c, packet, offset, len);
    /* Nothing of a failure stays queued for the process's other libcrypto users. The
     * whole queue is cleared, not popped to a mark set before: a mark on every packet
     * doubled AES's cost, and under the GIL whatever else is queued is a leftover those
     * users clear themselves before each call (CPython's _ssl and _hashlib do). */
    if (status != 0)
        ERR_clear_error();
    return status;
}

void
rtp_cipher_inject_failures(rtp_cipher *c, unsigned n)
{
    c->fail = n;
}

/* Fetched once for the process (a fetch searches the providers under a lock); kept. Its
 * callers hold the GIL, so the first fetch is not raced. */
static EVP_MAC *blake2s_mac;

static int
rc4_setup(rtp_cipher *c, const unsigned char *key, size_t keylen)
{
    if (blake2s_mac == NULL)
        blake2s_mac = EVP_MAC_fetch(NULL, "BLAKE2SMAC", NULL);
    if (blake2s_mac == NULL)
        return -1;  /* e.g. a FIPS-only configuration, which has no BLAKE2 */
    c->mac = EVP_MAC_CTX_new(blake2s_mac);
    if (c->mac == NULL)
        return -1;
    size_t size = RC4_PACKET_KEY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(c->mac, key, keylen, params) ? 0 : -1;
}

static int
aes_setup(rtp_cipher *c, const unsigned char *key)
{
    c->aes = EVP_CIPHER_CTX_new();
    if (c->aes == NULL || !EVP_EncryptInit_ex(c->aes, EVP_aes_128_ecb(), NULL, key, NULL))
        return -1;
    return EVP_CIPHER_CTX_set_padding(c->aes, 0) ? 0 : -1;
}

rtp_cipher *
rtp_cipher_new(int mode, const unsigned char *key, size_t keylen, const char **why)
{
    switch (mode) {
    case RTPC_XOR:
        if (keylen < 1 || keylen > XOR_MAX_KEY) {
            *why = "XOR (mode 1) needs a key of 1 to 256 bytes";
            return NULL;
        }
        break;
    case RTPC_RC4:
        if (keylen < 1 || keylen > RC4_MAX_KEY) {
            *why = "RC4 (mode 2) needs a key of 1 to 32 bytes";
            return NULL;
        }
        break;
    case RTPC_AES128:
        if (keylen != 16) {
            *why = "AES128 (mode 3) needs a key of exactly 16 bytes";
            return NULL;
        }
        break;
    default:
        *why = "unknown RTP encryption mode; expected 1 XOR, 2 RC4, 3 AES128";
        return NULL;
    }
    rtp_cipher *c = calloc(1, sizeof *c);
    if (c == NULL) {
        *why = "out of memory";
        return NULL;
    }
    c->mode = mode;
    int status = 0;
    if (mode == RTPC_XOR) {
        memcpy(c->key, key, keylen);
        c->keylen = keylen;
    } else if (mode == RTPC_RC4) {
        status = rc4_setup(c, key, keylen);
    } else {
        status = aes_setup(c, key);
    }
    if (status != 0) {
        /* The reason, then the queue cleared: nothing of it is left for other users. */
        static char reason[200];
        const char *lib = ERR_reason_error_string(ERR_peek_last_error());
        snprintf(reason, sizeof reason, "libcrypto could not set up the cipher: %s",
                 lib != NULL ? lib : "no reason given");
        ERR_clear_error();
        *why = reason;
        rtp_cipher_free(c);
        return NULL;
    }
    return c;
}

void
rtp_cipher_free(rtp_cipher *c)
{
    if (c == NULL)
        return;
    EVP_MAC_CTX_free(c->mac);
    EVP_CIPHER_CTX_free(c->aes);
    OPENSSL_cleanse(c->key, sizeof c->key);
    free(c);
}
