# Vigil build. Everything generated (vmlinux.h, BPF objects, skeletons,
# protoc-c output, objects, binaries) lands in build/. Quiet unless V=1.

BUILD   ?= build
CC      ?= gcc
CLANG   ?= clang
BPFTOOL ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
PROTOC_C ?= protoc-c
PREFIX  ?= /usr/local
DESTDIR ?=

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-8s %s\n' $(1) $(2)
endif

PKGS := libbpf openssl libhs libprotobuf-c libnl-3.0 libnl-idiag-3.0 libnghttp2 \
        libzstd yaml-0.1 sqlite3 libcurl zlib libbrotlidec libbrotlienc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SAN ?=
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
endif

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
           -Wshadow -Wformat=2 -Wno-format-truncation -fno-strict-aliasing -MMD -MP $(SANFLAGS) \
           -I$(BUILD) -I$(BUILD)/gen -Ibpf -Icommon -Iagent -Icollector $(PKG_CFLAGS)
LDFLAGS += $(SANFLAGS)
LDLIBS  += $(PKG_LIBS) -lresolv -lpthread -lm

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -I$(BUILD) -Ibpf -Wall -Werror

COMMON_SRCS    := $(filter-out common/evfields_check.c,$(wildcard common/*.c))
AGENT_SRCS     := $(wildcard agent/*.c agent/*/*.c)
# the chat web apps' adapters (providers.c and config.c reach them through webapps.c)
WEBAPP_SRCS    := agent/providers/webapps.c $(wildcard agent/providers/webapp_*.c)
# every provider's adapter (providers.c reaches them through its table): the
# API providers' files and the web apps'
PROVIDER_SRCS  := $(filter-out agent/providers/providers.c,$(wildcard agent/providers/*.c))
COLLECTOR_SRCS := $(wildcard collector/*.c)
CLI_SRCS       := $(wildcard collector/cli/*.c)
BPF_SRCS       := $(wildcard bpf/*.bpf.c)
PROTO_SRCS     := $(wildcard proto/vigil/*.proto)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
COMMON_OBJS    := $(call obj,$(COMMON_SRCS))
AGENT_OBJS     := $(call obj,$(AGENT_SRCS))
COLLECTOR_OBJS := $(call obj,$(COLLECTOR_SRCS))
CLI_OBJS       := $(call obj,$(CLI_SRCS))
PROTO_GEN_C    := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTO_SRCS))
PROTO_OBJS     := $(patsubst $(BUILD)/%.c,$(BUILD)/obj/%.o,$(PROTO_GEN_C))
SKELS          := $(patsubst bpf/%.bpf.c,$(BUILD)/%.skel.h,$(BPF_SRCS))
GENERATED      := $(SKELS) $(PROTO_GEN_C)

# Libraries of our own: a binary pulls in only the objects it references.
LIBCOMMON := $(BUILD)/libcommon.a
LIBAGENT  := $(BUILD)/libagent.a

BINS := $(BUILD)/vigil-agent $(BUILD)/vigil-collector $(BUILD)/vigil

# Keep intermediate BPF objects (make would delete them after the skeleton).
.SECONDARY:

.PHONY: all test unit e2e demo bench eval fuzz install deb clean deps
all: $(BINS)

$(BUILD)/vmlinux.h:
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BUILD)/vmlinux.h $(wildcard bpf/*.h)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/%.skel.h: $(BUILD)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	$(call msg,PROTOC,$@)
	$(Q)mkdir -p $(BUILD)/gen
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/obj/%.o: $(BUILD)/%.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(filter-out -Werror -Wshadow,$(CFLAGS)) -c $< -o $@

$(BUILD)/obj/%.o: %.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# First build only: objects that include generated headers wait for them
# (after that, -MMD dependency files take over).
$(BUILD)/obj/agent/kernel/capture.o $(BUILD)/obj/agent/main.o: | $(SKELS)
$(COMMON_OBJS) $(AGENT_OBJS) $(COLLECTOR_OBJS) $(CLI_OBJS): | $(PROTO_GEN_C)

$(LIBCOMMON): $(COMMON_OBJS) $(PROTO_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIBAGENT): $(filter-out $(BUILD)/obj/agent/main.o,$(AGENT_OBJS))
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/vigil-agent: $(BUILD)/obj/agent/main.o $(LIBAGENT) $(LIBCOMMON)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The web console's files, embedded in the collector (collector/console.h).
CONSOLE_FILES := $(sort $(wildcard collector/console/*.html collector/console/*.js collector/console/*.css))
$(BUILD)/gen/console_assets.c: scripts/embed.sh $(CONSOLE_FILES)
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)sh scripts/embed.sh $(CONSOLE_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/vigil-collector: $(COLLECTOR_OBJS) $(BUILD)/obj/gen/console_assets.o $(LIBCOMMON)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/vigil: $(CLI_OBJS) $(LIBAGENT) $(LIBCOMMON)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The event's field list (common/evfields.h) against audit.proto: a field
# added, renumbered or retyped in one place only fails the build here.
$(BUILD)/evfields-check: $(BUILD)/obj/common/evfields_check.o $(LIBCOMMON)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/evfields.ok: $(BUILD)/evfields-check
	$(call msg,CHECK,evfields)
	$(Q)$< && touch $@

$(BINS): | $(BUILD)/evfields.ok

# Unit tests: tests/unit/test_X.c links the module X (agent/X.c, common/X.c
# or collector/X.c) plus what tests/unit/X.mk adds to test_X_DEPS.
-include $(wildcard tests/unit/*.mk)
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
modobj = $(call obj,$(wildcard agent/$(1).c agent/*/$(1).c common/$(1).c collector/$(1).c))

.SECONDEXPANSION:
$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $$(call modobj,$$*) $$(call obj,$$(test_$$*_DEPS)) $(LIBCOMMON)
	$(call msg,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

deps:
	$(Q)bash scripts/deps.sh test

test: deps
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BINS)
	$(Q)BUILD=$(BUILD) SAN=$(SAN) bash tests/run.sh

unit: all $(UNIT_BINS)
	$(Q)BUILD=$(BUILD) VIGIL_ONLY=unit bash tests/run.sh

e2e: all $(UNIT_BINS)
	$(Q)BUILD=$(BUILD) VIGIL_ONLY=e2e bash tests/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bash scripts/demo.sh

bench:
	$(Q)bash scripts/deps.sh bench
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bash tests/bench/run.sh

fuzz: all
	$(Q)FUZZ_SECONDS=$${FUZZ_SECONDS:-60} bash tests/fuzz/run.sh

eval: all
	$(Q)bash tests/eval/run.sh

install: all
	$(Q)bash scripts/install.sh "$(DESTDIR)" "$(PREFIX)"

# A Debian package (build/vigil_VERSION_ARCH.deb) of the same files, prefix /usr.
deb: all
	$(Q)BUILD=$(BUILD) bash scripts/deb.sh

clean:
	$(Q)rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
