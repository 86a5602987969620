#!/bin/sh
# Build dist/dsagent_<version>_<arch>.deb: the agent in its own virtualenv under /opt/dsagent.
# The virtualenv is made with Debian's /usr/bin/python3, so its interpreter link is valid on the
# target; the scripts' shebangs are rewritten from the build directory to /opt/dsagent.
set -eu
cd "$(dirname "$0")/.."
PY=${DEB_PYTHON:-/usr/bin/python3}
command -v dpkg-deb >/dev/null || { echo "build-deb: dpkg-deb missing (apt-get install dpkg-dev)" >&2; exit 1; }
[ -x "$PY" ] || { echo "build-deb: $PY missing (apt-get install python3 python3-venv)" >&2; exit 1; }
VERSION=$($PY -c 'import re; print(re.search(r"__version__ = \"(.+)\"", open("agent/__init__.py").read()).group(1))')
ARCH=$(dpkg --print-architecture)
PYVER=$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
STAGE=build/deb/root
rm -rf build/deb && mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" dist

"$PY" -m venv "$STAGE/opt/dsagent"
"$STAGE/opt/dsagent/bin/pip" install -q --no-cache-dir --upgrade pip
"$STAGE/opt/dsagent/bin/pip" install -q --no-cache-dir .
rm -rf "$STAGE/opt/dsagent/bin/pip"* "$STAGE/opt/dsagent/bin/activate"* "$STAGE/opt/dsagent/bin/Activate.ps1"
ABS=$(cd "$STAGE/opt/dsagent" && pwd)
grep -rl "$ABS" "$STAGE/opt/dsagent/bin" | xargs -r sed -i "s|$ABS|/opt/dsagent|g"
find "$STAGE/opt/dsagent" -name '__pycache__' -prune -exec rm -rf {} +

install -D -m 0644 systemd/dsagent.service "$STAGE/lib/systemd/system/dsagent.service"
install -D -m 0644 systemd/dsagent.sysusers "$STAGE/usr/lib/sysusers.d/dsagent.conf"
install -D -m 0644 systemd/dsagent.tmpfiles "$STAGE/usr/lib/tmpfiles.d/dsagent.conf"
install -D -m 0644 rules/default.yml "$STAGE/usr/share/dsagent/rules/default.yml"
install -D -m 0640 packaging/agent.toml "$STAGE/etc/dsagent/agent.toml"
mkdir -p "$STAGE/usr/bin" && ln -s /opt/dsagent/bin/dsagent "$STAGE/usr/bin/dsagent"
install -D -m 0644 README.md "$STAGE/usr/share/doc/dsagent/README.md"
for page in docs/*.md; do  # the README links into docs/
    install -D -m 0644 "$page" "$STAGE/usr/share/doc/dsagent/$page"
done

SIZE=$(du -sk "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: dsagent
Version: $VERSION
Architecture: $ARCH
Maintainer: dsagent maintainers <dsagent@localhost>
Installed-Size: $SIZE
Depends: python$PYVER, adduser
Section: admin
Priority: optional
Description: monitoring agent for GPU inference nodes
 One daemon per node: samples GPUs (NVML), host, disks and network loss; evaluates
 threshold rules; sends alerts to on-call webhooks through a durable outbox; ships
 request and node logs to Elasticsearch; health-checks the inference workers.
CONTROL
echo /etc/dsagent/agent.toml > "$STAGE/DEBIAN/conffiles"
install -m 0755 packaging/postinst "$STAGE/DEBIAN/postinst"
install -m 0755 packaging/prerm "$STAGE/DEBIAN/prerm"
install -m 0755 packaging/postrm "$STAGE/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "dist/dsagent_${VERSION}_${ARCH}.deb" >/dev/null
echo "built dist/dsagent_${VERSION}_${ARCH}.deb"
