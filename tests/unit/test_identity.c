/* identity: the container id comes out of the cgroup paths the runtimes
 * really write (Docker, Podman, containerd and CRI-O under Kubernetes, with
 * the systemd and the cgroupfs drivers), and nothing that only looks like
 * one (a conmon monitor, a short or upper-case id, a crafted unit name). */
#include <unistd.h>
#include "check.h"
#include "kernel/identity.h"

#define ID "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
#define ID2 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char *cid(const char *cgroup)
{
	static char out[65];

	memset(out, 'x', sizeof(out));
	identity_container_id(cgroup, out, sizeof(out));
	return out;
}

TEST(runtimes_paths_give_the_container_id)
{
	static const char *const paths[] = {
		"/system.slice/docker-" ID ".scope",
		"/machine.slice/libpod-" ID ".scope",
		"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID ".scope/container",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f6a7b8.slice/"
		"cri-containerd-" ID ".scope",
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podabc.slice/crio-" ID ".scope",
		"/docker/" ID,
		"/kubepods/burstable/pod1f2e3d4c-5b6a-7980-a1b2-c3d4e5f6a7b8/" ID,
		NULL,
	};

	for (int i = 0; paths[i]; i++)
		CHECK(!strcmp(cid(paths[i]), ID), "%s gave '%s'", paths[i], cid(paths[i]));
}

TEST(nearest_runtime_wins)
{
	CHECK(!strcmp(cid("/system.slice/docker-" ID ".scope/docker/" ID2), ID2), "docker in docker: '%s'",
	      cid("/system.slice/docker-" ID ".scope/docker/" ID2));
}

TEST(no_container_no_id)
{
	static const char *const paths[] = {
		"/", "", "/user.slice/user-1000.slice/session-3.scope", "/system.slice/vigil-agent.service",
		"/machine.slice/libpod-conmon-" ID ".scope", "/system.slice/crio-conmon-" ID ".scope",
		"/system.slice/docker-" ID ".service",           /* not a scope */
		"/system.slice/docker-" ID "0.scope",            /* 65 digits */
		"/system.slice/docker-3F4E1C2B9A8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F3A2B1C0D9E8F7A6B5C4D3E2F.scope",
		"/system.slice/docker-" ID ".scope.evil/x",
		"/system.slice/evil-" ID ".scope",
		NULL,
	};

	for (int i = 0; paths[i]; i++)
		CHECK(cid(paths[i])[0] == 0, "%s gave '%s', want none", paths[i], cid(paths[i]));
	CHECK(!identity_container_id(NULL, (char[65]){ 0 }, 65), "NULL path");
	CHECK(!identity_container_id("/docker/" ID, (char[64]){ 0 }, 64), "short output buffer accepted");
}

TEST(origin_fills_container_from_own_cgroup)
{
	struct vigil_origin o;
	struct identity id;

	memset(&o, 0, sizeof(o));
	o.tgid = o.pid = (uint32_t)getpid();
	identity_from_origin(&id, &o);
	CHECK(id.cgroup[0] == '/', "own cgroup not read: '%s'", id.cgroup);
	char want[65];
	identity_container_id(id.cgroup, want, sizeof(want));
	CHECK(!strcmp(id.container_id, want), "container_id '%s' vs parser '%s'", id.container_id, want);
}
