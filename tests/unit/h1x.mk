# The engine runs the real exchange (inspection, policy, vault, audit): it
# links every agent module but the entry point (the driver, intercept.c,
# comes along: conn.c hands connections to it).
test_h1x_DEPS := $(filter-out agent/main.c agent/proxy/h1x.c,$(AGENT_SRCS))
