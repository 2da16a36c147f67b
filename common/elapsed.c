/* elapsed.c -- time since a moment of the wall clock, in ms and in us */
#include "elapsed.h"

#include <stddef.h>

long elapsed_ms(const struct timeval *since)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (now.tv_sec - since->tv_sec) * 1000L + (now.tv_usec - since->tv_usec) / 1000L;
}

uint64_t elapsed_usec(const struct timeval *since)
{
	struct timeval now;
	long long us;

	gettimeofday(&now, NULL);
	us = (now.tv_sec - since->tv_sec) * 1000000LL + (now.tv_usec - since->tv_usec);
	return us > 0 ? (uint64_t)us : 0;
}
