# Countersign — the two commands a fresh clone needs.
#
#   make run    start the example KMS hierarchy (hierarchy/) in the foreground
#   make test   build everything and run every test
#
# Each target first installs the Debian packages the build links against when they are
# missing (apt-get; as root, or through sudo).

# Build: the C libraries. Tests also drive the real tools: openssl (key files), dig, kdig and
# drill (three DNS libraries that are not ours), and a stock NSD (the proxy as a host's only
# resolver).
DEBIAN_PACKAGES := libldns-dev libssl-dev libsqlite3-dev libnftables-dev pkg-config openssl bind9-dnsutils \
                   iproute2 tcpdump curl nftables nsd knot-dnsutils ldnsutils
SWIFT ?= swift

.PHONY: run test build deps demo-keys bench fuzz

deps:
	@missing=""; \
	for package in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# git checks files out 0644, and kmsd refuses a private key others may read (as OpenSSH
# does): the example hierarchy's demo keys are made owner-only before use.
demo-keys:
	@find hierarchy/keys -name '*.pem' ! -name '*.pub.pem' -exec chmod 600 {} +

build: deps demo-keys
	$(SWIFT) build

# Swift Testing starts every test at once by default. Most tests here start real servers (a
# whole hierarchy each), and on a small machine 230 of them at once queued queries past their
# clients' time-outs; four tests a core at a time take as long and never starve each other.
TEST_WIDTH ?= $(shell echo $$(( $$(nproc) * 4 )))

test: deps demo-keys
	$(SWIFT) build --build-tests
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(TEST_WIDTH) $(SWIFT) test
	.build/debug/FuzzDNSMessage Fuzz/corpus/dns-message
	.build/debug/FuzzKMSRecord Fuzz/corpus/kms-record
	.build/debug/FuzzConfig Fuzz/corpus/config
	.build/debug/FuzzTunnelHeader Fuzz/corpus/tunnel-header
	Tests/e2e/hierarchy.sh
	Tests/e2e/secondary.sh
	Tests/e2e/proxy-netns.sh
	Tests/e2e/kernel-netns.sh
	Tests/e2e/dualstack-netns.sh
	Tests/e2e/ipv6-proxy-netns.sh
	Tests/e2e/nodes-netns.sh

run: build
	@scripts/run-hierarchy

# Benchmarks side by side with NSD and Knot (docs/BENCHMARKS.md): release build, dnsperf.
BENCH_PACKAGES := dnsperf knot nsd nettle-dev
bench: deps demo-keys
	@$(MAKE) --no-print-directory deps DEBIAN_PACKAGES="$(BENCH_PACKAGES)"
	$(SWIFT) build -c release
	scripts/bench

# libFuzzer over the decoders and parsers (docs/FUZZING.md); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) scripts/fuzz
