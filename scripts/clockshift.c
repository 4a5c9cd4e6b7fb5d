/*
 * clockshift: an LD_PRELOAD library that moves a process's wall clock.
 *
 * CLOCK_REALTIME and CLOCK_REALTIME_COARSE, as read through clock_gettime(),
 * gettimeofday() and time(), are shifted by PLANTON_CLOCK_SHIFT seconds (a
 * float, read once from the environment; unset or unparsable means 0).
 * CLOCK_MONOTONIC and every other clock are left alone, so sleeps, timeouts
 * and lock waits (which Python measures on the monotonic clock) behave as
 * usual: only the time the process *reads* is wrong, as on a host whose
 * clock is off.
 *
 * Built by scripts/clockshift.py:  cc -shared -fPIC -O2 -o clockshift.so clockshift.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NANOS 1000000000LL

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static long long shift_ns; /* the shift, in nanoseconds */

/* Should dlsym find no clock_gettime after ours: ask the kernel. */
static int syscall_clock_gettime(clockid_t clock, struct timespec *ts) {
    return (int)syscall(SYS_clock_gettime, clock, ts);
}

/* Resolve the next clock_gettime (libc's) and read the shift. Run when the
 * library is loaded; also on first use, should another library's constructor
 * read the clock before ours ran. Both are idempotent. */
__attribute__((constructor)) static void clockshift_init(void) {
    if (real_clock_gettime == NULL) {
        clock_gettime_fn next;
        /* POSIX's way to turn dlsym's void * into a function pointer. */
        *(void **)(&next) = dlsym(RTLD_NEXT, "clock_gettime");
        real_clock_gettime = next != NULL ? next : syscall_clock_gettime;
    }
    const char *text = getenv("PLANTON_CLOCK_SHIFT");
    if (text != NULL && *text != '\0') {
        char *end = NULL;
        double seconds = strtod(text, &end);
        if (end != text) {
            double nanos = seconds * (double)NANOS;
            shift_ns = (long long)(nanos < 0 ? nanos - 0.5 : nanos + 0.5);
        }
    }
}

/* Add the shift to a timespec, keeping tv_nsec in [0, 1e9). */
static void shifted(struct timespec *ts) {
    long long nsec = (long long)ts->tv_nsec + shift_ns % NANOS;
    ts->tv_sec += (time_t)(shift_ns / NANOS);
    if (nsec >= NANOS) {
        nsec -= NANOS;
        ts->tv_sec += 1;
    } else if (nsec < 0) {
        nsec += NANOS;
        ts->tv_sec -= 1;
    }
    ts->tv_nsec = (long)nsec;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    if (real_clock_gettime == NULL) {
        clockshift_init();
    }
    int result = real_clock_gettime(clock, ts);
    if (result == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        shifted(ts);
    }
    return result;
}

/* The signature of glibc >= 2.31; the time zone argument is obsolete and ignored.
 * tv must not be NULL (glibc declares it so). */
int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    struct timespec ts;
    int result = clock_gettime(CLOCK_REALTIME, &ts);
    if (result == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = (suseconds_t)(ts.tv_nsec / 1000);
    }
    return result;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return (time_t)-1;
    }
    if (out != NULL) {
        *out = ts.tv_sec;
    }
    return ts.tv_sec;
}
