# Makefile -- egressd: `make` builds build/egressd; `make test` runs every test.
CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
# systemd's unit search path includes /usr/local/lib/systemd/system and
# /usr/lib/systemd/system, so the unit follows PREFIX
UNITDIR ?= $(PREFIX)/lib/systemd/system
# the one version, from common/version.h
VERSION := $(shell sed -n 's/^\#define EGRESSD_VERSION "\(.*\)"/\1/p' common/version.h)
LLHTTP  ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

WARN = -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wwrite-strings \
       -Wmissing-prototypes -Wstrict-prototypes -Wformat=2 -Wundef \
       -Wno-sign-compare -Wno-unused-parameter -Wvla
CFLAGS ?= -O2 -g
ALLCFLAGS = -std=gnu11 $(CFLAGS) $(WARN) -D_GNU_SOURCE -fno-strict-aliasing

# The folders are layers: common <- policy, certs <- proxy <- jail <- cli.
# A folder's sources see only its own headers and those of the layers below
# it, so an include against the layering does not compile. Tests, harnesses
# and anything outside these folders see every header (INC_ALL).
INC_common = -Icommon
INC_policy = $(INC_common) -Ipolicy
INC_certs  = $(INC_common) -Icerts
INC_proxy  = $(INC_common) -Ipolicy -Icerts -Iproxy -I$(LLHTTP_INC)
INC_jail   = $(INC_proxy) -Ijail
INC_cli    = $(INC_jail) -Icli
INC_ALL    = $(INC_cli)
LIBS = -levent_pthreads -levent -lssl -lcrypto -lpcre2-8 -ljansson -lz -lbrotlidec -lzstd -lnghttp2 -lpthread

ifdef SANITIZE
ALLCFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDSAN = -fsanitize=$(SANITIZE)
endif

LIB_SRC  = $(filter-out cli/main.c,$(wildcard common/*.c policy/*.c certs/*.c proxy/*.c jail/*.c cli/*.c))
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
LLHTTP_OBJ = $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
UNIT_SRC = $(wildcard tests/unit/*_test.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)
REPLAY_BIN = $(FUZZ_SRC:fuzz/%.c=$(BUILD)/replay/%)

.PHONY: all deps binaries run demo test unit fuzz fuzz-smoke bench clean install

# deps first, then a fresh make: the packages it installs (llhttp's sources in
# $(LLHTTP)) must exist before make reads that directory for the pattern rules
all: deps
	@$(MAKE) --no-print-directory binaries

binaries: $(BUILD)/egressd $(BUILD)/egressd.1

deps:
	@scripts/deps.sh build

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(or $(INC_$(firstword $(subst /, ,$*))),$(INC_ALL)) -MMD -MP -c $< -o $@

# llhttp from Debian's node-llhttp sources, built with warnings relaxed (not our code)
$(BUILD)/llhttp/%.o: $(LLHTTP)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(CFLAGS) $(if $(SANITIZE),-fsanitize=$(SANITIZE)) -I$(LLHTTP_INC) -DLLHTTP_STRICT_MODE=1 -w -c $< -o $@

$(BUILD)/libegressd.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/egressd: $(BUILD)/cli/main.o $(BUILD)/libegressd.a
	$(CC) $(LDSAN) -o $@ $^ $(LIBS)

# the man page with the version of common/version.h
$(BUILD)/egressd.1: docs/egressd.1 common/version.h
	@mkdir -p $(dir $@)
	sed 's/@VERSION@/$(VERSION)/g' docs/egressd.1 > $@

# make install [PREFIX=/usr/local] [DESTDIR=staging]: the binary, the man page,
# the systemd unit (its ExecStart names $(PREFIX)/bin/egressd)
install: $(BUILD)/egressd $(BUILD)/egressd.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/egressd $(DESTDIR)$(PREFIX)/bin/egressd
	install -m 0644 $(BUILD)/egressd.1 $(DESTDIR)$(PREFIX)/share/man/man1/egressd.1
	sed 's|/usr/local/bin/egressd|$(PREFIX)/bin/egressd|g' contrib/egressd.service > $(BUILD)/egressd.service
	install -m 0644 $(BUILD)/egressd.service $(DESTDIR)$(UNITDIR)/egressd.service

$(BUILD)/tests/%: tests/unit/%.c tests/unit/tap.h tests/unit/sockpair.h tests/unit/h2pair.h $(BUILD)/libegressd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(INC_ALL) -Itests/unit -o $@ $< $(BUILD)/libegressd.a $(LDSAN) $(LIBS)

# fuzz harnesses linked with a replay main() so gcc+ASan can run the corpora
$(BUILD)/replay/%: fuzz/%.c fuzz/replay.c $(BUILD)/libegressd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(INC_ALL) -DFUZZ_REPLAY -o $@ $< fuzz/replay.c $(BUILD)/libegressd.a $(LDSAN) $(LIBS)

unit: $(UNIT_BIN) $(REPLAY_BIN)

run: all
	@echo "egressd on 127.0.0.1:3128 with examples/policy.json"
	@echo "try:  curl -x http://127.0.0.1:3128 https://example.com/   (allowed by the example policy)"
	@echo "      curl -x http://127.0.0.1:3128 https://denied.test/    (403, X-Egressd-Reason: not-allowed)"
	$(BUILD)/egressd serve --listen 127.0.0.1:3128 -c examples/policy.json --log -

# offline demo: a loopback stand-in API, egressd with a secret, curl through it
demo: all
	@examples/demo.sh

# make test: deps, normal build, ASan+UBSan build, unit tests and corpus replay
# under ASan, integration tests against both binaries; last line "N passed, N failed".
test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory binaries
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=address,undefined build/asan/egressd unit
	@tests/run.sh

fuzz:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory -f fuzz/Makefile CC=clang

fuzz-smoke: fuzz
	@fuzz/smoke.sh $${FUZZ_SECONDS:-30}

bench: all
	@scripts/deps.sh bench
	@bench/run.sh

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
