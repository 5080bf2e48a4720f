#!/bin/sh
# Installs unsock-launch and the unsock supervisor service (run as root from a checkout):
#   deploy/install.sh && systemctl enable --now unsock-supervisor.socket
# PREFIX (default /usr/local) takes the programs; /etc/unsock, the units and tmpfiles go where systemd looks.
set -eu
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
UNITS=${UNITS:-/etc/systemd/system}
out=artifacts/install

dotnet publish src/Unsock.Launcher -c Release -o "$out/launcher" --nologo -v q
# NativeAOT like the launcher: one native program, no .NET runtime needed on the machine.
dotnet publish src/Unsock.Supervisor -c Release -o "$out/supervisor" --nologo -v q

install -d "$PREFIX/bin"
install -m 0755 "$out/launcher/unsock-launch" "$PREFIX/bin/unsock-launch"
# The directory held the runtime and assemblies of earlier (JIT) versions: replaced by the one program.
rm -rf "$PREFIX/lib/unsock-supervisor"
install -d "$PREFIX/lib/unsock-supervisor"
install -m 0755 "$out/supervisor/unsock-supervisor" "$PREFIX/lib/unsock-supervisor/unsock-supervisor"
ln -sf "$PREFIX/lib/unsock-supervisor/unsock-supervisor" "$PREFIX/bin/unsock-supervisor"

install -d "$UNITS" /etc/tmpfiles.d
sed "s|/usr/local/lib/unsock-supervisor|$PREFIX/lib/unsock-supervisor|" deploy/unsock-supervisor.service > "$UNITS/unsock-supervisor.service"
install -m 0644 deploy/unsock-supervisor.socket "$UNITS/unsock-supervisor.socket"
install -m 0644 deploy/tmpfiles.d/unsock.conf /etc/tmpfiles.d/unsock.conf
# FileDescriptorStorePreserve= is systemd 254's: older versions warn about the unknown key.
if [ "$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')" -ge 254 ] 2>/dev/null; then
  install -d "$UNITS/unsock-supervisor.service.d"
  install -m 0644 deploy/unsock-supervisor.service.d/fdstore-preserve.conf "$UNITS/unsock-supervisor.service.d/fdstore-preserve.conf"
fi

# Configuration and example policies, never over what an administrator wrote.
install -d -m 0755 /etc/unsock /etc/unsock/policies
[ -e /etc/unsock/supervisor.json ] || install -m 0644 deploy/supervisor/supervisor.json /etc/unsock/supervisor.json
for f in deploy/supervisor/policies/*.json; do
  [ -e "/etc/unsock/policies/$(basename "$f")" ] || install -m 0644 "$f" "/etc/unsock/policies/$(basename "$f")"
done

if [ -d /run/systemd/system ]; then
  systemd-tmpfiles --create /etc/tmpfiles.d/unsock.conf
  systemctl daemon-reload
  echo "installed; start it with: systemctl enable --now unsock-supervisor.socket"
else
  echo "installed (systemd is not running here: start $PREFIX/bin/unsock-supervisor by hand)"
fi
