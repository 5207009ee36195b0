/* The load generator's hot loop for bench/media.py (loaded with ctypes; the Python
 * generator in bench/media.py does the same thing, more slowly, when no C compiler is
 * available).
 *
 * The loop runs in ticks of tick_ns (GEN_TICK_MS of bench/media.py, 0.97 ms, by
 * default): at each tick it sends every packet that is due, then drains every receive
 * socket until it is empty, then sleeps until the next tick (clock_nanosleep,
 * CLOCK_MONOTONIC, TIMER_ABSTIME). So at any load it makes a few syscalls per socket
 * per tick, not a busy poll of small ones. A tick that overruns is followed at once by
 * the next, and the ticks go on from there (the missed ones are not caught up in a
 * burst). tick_ns <= 0: no sleeping (a busy poll).
 *
 * Senders: each sends one RTP stream per call of its group to that call's destination,
 * round-robin over the streams at n * 50 packets/s, with sendmmsg and three iovecs per
 * packet: an 8-byte header shared by the batch (V=2, PT 0, SEQ, TS), the stream's SSRC,
 * and the shared 160-byte payload. TS carries the send time in microseconds since the
 * start (read again for every sendmmsg batch), SEQ the packet number of the stream,
 * SSRC = ssrc_base + stream index. A packet goes out at the first tick at or after its
 * due time, so up to one tick late (the max send lag records it).
 *
 * Receivers: recvmmsg in batches; per packet the SSRC gives the stream, TS the latency
 * (receive time of the batch minus TS: a packet waits in the socket up to one tick
 * before it is read, so the latency resolution is about one tick). On-time packets
 * (latency < late_us) are counted per stream and in a latency histogram; late ones are
 * counted (and per 100 ms of receive time); packets of other runs are "stale". The
 * first packet of every 64th batch is copied out so that Python can check its payload
 * (with the cipher, for encrypted modes).
 *
 * Build: cc -O2 -shared -fPIC -o gen.so gen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define PAYLOAD_LEN 160
#define PACKET_LEN 172
#define RX_SLOT 192
#define RX_BATCH 512
#define MAX_VLEN 1024

enum {
    OUT_LATE, OUT_STALE, OUT_MAX_LAT_US, OUT_EAGAIN, OUT_ERRORS, OUT_MAX_LAG_NS,
    OUT_LAST_SEND_NS, OUT_BATCHES, OUT_NSAMPLES, OUT_COUNT
};

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct sender {
    int fd, n;
    int64_t total, rate, sent;
    uint8_t hdr[8];
    struct mmsghdr *msgs;
    struct iovec *iovs;
};

/* What the receive side needs, shared by every drained socket. */
struct rx {
    uint8_t *buf;
    struct mmsghdr *msgs;
    int64_t t0;
    uint32_t ssrc_base, late_us;
    int nstreams, hist_shift, nbuckets, ntl, max_samples;
    uint32_t *counts, *timeline;
    uint64_t *hist;
    int64_t *out;
    uint8_t *samples;
};

/* Sends what sender x has due by el (ns since t0), in sendmmsg batches of at most
 * MAX_VLEN packets (fewer at the wrap of its round-robin); returns packets sent. */
static int64_t send_due(struct sender *x, int64_t el, int64_t t0, int64_t *out)
{
    int64_t due = el * x->rate / 1000000000;
    if (due > x->total)
        due = x->total;
    if (due <= x->sent)
        return 0;
    int64_t lag = el - x->sent * 1000000000 / x->rate;
    if (lag > out[OUT_MAX_LAG_NS])
        out[OUT_MAX_LAG_NS] = lag;
    int64_t start = x->sent;
    while (x->sent < due) {
        int j0 = (int)(x->sent % x->n);
        int64_t m = x->n - j0;
        if (m > due - x->sent)
            m = due - x->sent;
        if (m > MAX_VLEN)
            m = MAX_VLEN;
        uint16_t seq = htons((uint16_t)(x->sent / x->n));
        uint32_t tsn = htonl((uint32_t)((mono_ns() - t0) / 1000));
        memcpy(x->hdr + 2, &seq, 2);
        memcpy(x->hdr + 4, &tsn, 4);
        int r = sendmmsg(x->fd, &x->msgs[j0], (unsigned)m, 0);
        if (r <= 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                out[OUT_EAGAIN]++;
            else
                out[OUT_ERRORS]++;
            break;
        }
        x->sent += r;
    }
    return x->sent - start;
}

/* Reads socket fd until it is empty: until recvmmsg fails (EAGAIN) or returns a short
 * batch (it stopped because the queue was empty). Returns packets read. */
static int64_t drain_socket(int fd, struct rx *R)
{
    int64_t *out = R->out;
    int64_t total = 0;
    for (;;) {
        int got = recvmmsg(fd, R->msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        if (got <= 0)
            break;
        total += got;
        out[OUT_BATCHES]++;
        int64_t rnow = mono_ns() - R->t0;
        uint32_t now_us = (uint32_t)(rnow / 1000);
        int tl = (int)(rnow / 100000000);
        if (tl >= R->ntl)
            tl = R->ntl - 1;
        uint32_t bmax = 0, blate = 0;
        for (int i = 0; i < got; i++) {
            const uint8_t *p = R->buf + (size_t)RX_SLOT * i;
            if (R->msgs[i].msg_len < 12) {
                out[OUT_STALE]++;
                continue;
            }
            uint32_t ts, ssrc;
            memcpy(&ts, p + 4, 4);
            memcpy(&ssrc, p + 8, 4);
            ts = ntohl(ts);
            uint32_t idx = ntohl(ssrc) - R->ssrc_base;
            if (idx >= (uint32_t)R->nstreams) {
                out[OUT_STALE]++;
                continue;
            }
            uint32_t lat = now_us - ts;
            if (lat >= 0x80000000u) {
                out[OUT_STALE]++;
                continue;
            }
            if (lat < R->late_us) {
                R->counts[idx]++;
                int b = (int)(lat >> R->hist_shift);
                if (b >= R->nbuckets)
                    b = R->nbuckets - 1;
                R->hist[b]++;
            } else {
                blate++;
            }
            if (lat > bmax)
                bmax = lat;
        }
        out[OUT_LATE] += blate;
        R->timeline[2 * tl] += blate;
        if (bmax > R->timeline[2 * tl + 1])
            R->timeline[2 * tl + 1] = bmax;
        if (bmax > (uint32_t)out[OUT_MAX_LAT_US])
            out[OUT_MAX_LAT_US] = bmax;
        if ((out[OUT_BATCHES] & 63) == 1 && out[OUT_NSAMPLES] < R->max_samples
            && R->msgs[0].msg_len == PACKET_LEN) {
            memcpy(R->samples + PACKET_LEN * out[OUT_NSAMPLES], R->buf, PACKET_LEN);
            out[OUT_NSAMPLES]++;
        }
        if (got < RX_BATCH)
            break;
    }
    return total;
}

static void free_all(struct sender *S, int nsenders, void *rxbuf, void *rmsgs, void *riovs)
{
    if (S) {
        for (int s = 0; s < nsenders; s++) {
            free(S[s].msgs);
            free(S[s].iovs);
        }
        free(S);
    }
    free(rxbuf);
    free(rmsgs);
    free(riovs);
}

/* Returns 0, or -1 when out of memory. All arrays are owned by the caller.
 * send_fds[s], send_n[s]: sender s's socket and stream count; dests (sockaddr_in) and
 * ssrcs are the senders' streams one after the other. sent_out[s]: packets sent.
 * Sending ends when every packet is sent, or at seconds_ns + hard_extra_ns; the loop
 * then goes on draining for drain_ns (from the later of that moment and seconds_ns). */
int gen_run(int nsenders, const int *send_fds, const int *send_n,
            const struct sockaddr_in *dests, const uint32_t *ssrcs,
            const uint8_t *payload, int packets_per_stream,
            int nrecv, const int *recv_fds, uint32_t ssrc_base, int nstreams,
            int64_t seconds_ns, int64_t drain_ns, int64_t hard_extra_ns, int64_t tick_ns,
            uint32_t late_us,
            uint32_t *counts, uint64_t *hist, int hist_shift, int nbuckets,
            uint32_t *timeline, int ntl, int64_t *out, int64_t *sent_out,
            uint8_t *samples, int max_samples)
{
    struct sender *S = calloc((size_t)nsenders, sizeof *S);
    uint8_t *rxbuf = malloc((size_t)RX_SLOT * RX_BATCH);
    struct mmsghdr *rmsgs = calloc(RX_BATCH, sizeof *rmsgs);
    struct iovec *riovs = calloc(RX_BATCH, sizeof *riovs);
    if (!S || !rxbuf || !rmsgs || !riovs) {
        free_all(S, S ? nsenders : 0, rxbuf, rmsgs, riovs);
        return -1;
    }
    int off = 0;
    for (int s = 0; s < nsenders; s++) {
        struct sender *x = &S[s];
        x->fd = send_fds[s];
        x->n = send_n[s];
        x->total = (int64_t)x->n * packets_per_stream;
        x->rate = (int64_t)x->n * 50;
        x->hdr[0] = 0x80;
        x->hdr[1] = 0;
        x->msgs = calloc((size_t)x->n, sizeof *x->msgs);
        x->iovs = calloc((size_t)x->n * 3, sizeof *x->iovs);
        if (!x->msgs || !x->iovs) {
            free_all(S, nsenders, rxbuf, rmsgs, riovs);
            return -1;
        }
        for (int j = 0; j < x->n; j++) {
            struct iovec *iv = &x->iovs[3 * j];
            iv[0].iov_base = x->hdr;
            iv[0].iov_len = 8;
            iv[1].iov_base = (void *)&ssrcs[off + j];
            iv[1].iov_len = 4;
            iv[2].iov_base = (void *)payload;
            iv[2].iov_len = PAYLOAD_LEN;
            x->msgs[j].msg_hdr.msg_name = (void *)&dests[off + j];
            x->msgs[j].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
            x->msgs[j].msg_hdr.msg_iov = iv;
            x->msgs[j].msg_hdr.msg_iovlen = 3;
        }
        off += x->n;
    }
    for (int i = 0; i < RX_BATCH; i++) {
        riovs[i].iov_base = rxbuf + (size_t)RX_SLOT * i;
        riovs[i].iov_len = RX_SLOT;
        rmsgs[i].msg_hdr.msg_iov = &riovs[i];
        rmsgs[i].msg_hdr.msg_iovlen = 1;
    }
    memset(out, 0, sizeof(int64_t) * OUT_COUNT);
    int64_t t0 = mono_ns();
    struct rx R = {
        .buf = rxbuf, .msgs = rmsgs, .t0 = t0, .ssrc_base = ssrc_base, .late_us = late_us,
        .nstreams = nstreams, .hist_shift = hist_shift, .nbuckets = nbuckets, .ntl = ntl,
        .max_samples = max_samples, .counts = counts, .timeline = timeline, .hist = hist,
        .out = out, .samples = samples,
    };
    int64_t send_end = t0 + seconds_ns, hard_end = send_end + hard_extra_ns;
    int64_t end = send_end + drain_ns;
    int64_t next_tick = t0;
    int sending = 1;
    for (;;) {
        int64_t now = mono_ns();
        if (sending) {
            int64_t el = now - t0, sent_now = 0;
            int all_done = 1;
            for (int s = 0; s < nsenders; s++) {
                sent_now += send_due(&S[s], el, t0, out);
                if (S[s].sent < S[s].total)
                    all_done = 0;
            }
            if (sent_now)
                out[OUT_LAST_SEND_NS] = el;
            if (all_done || now >= hard_end) {
                sending = 0;
                end = (now > send_end ? now : send_end) + drain_ns;
            }
        }
        for (int r = 0; r < nrecv; r++)
            drain_socket(recv_fds[r], &R);
        if (!sending && now >= end)
            break;
        if (tick_ns > 0) {
            /* Overrun (the tick's work took longer than a tick): the next tick at
             * once, and the grid goes on from there, with no burst of missed ticks. */
            next_tick += tick_ns;
            int64_t after = mono_ns();
            if (next_tick <= after) {
                next_tick = after;
                continue;
            }
            struct timespec d = {(time_t)(next_tick / 1000000000),
                                 (long)(next_tick % 1000000000)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d, NULL) == EINTR)
                ;
        }
    }
    for (int s = 0; s < nsenders; s++)
        sent_out[s] = S[s].sent;
    free_all(S, nsenders, rxbuf, rmsgs, riovs);
    return 0;
}
