# The testbed's authentication variants (`scripts/testbed up NAME --auth-variants`), sourced by
# scripts/testbed: extra sshd instances in the bastion namespace, each set up the way some real
# bastion is, which plain OpenSSH `ssh` handles — user and host certificates, an rsa-sha2-512-only
# server, a post-quantum-only KEX, keyboard-interactive through PAM after a key (2FA-like) — plus
# an ssh-agent holding a certificate identity (`scripts/testbed agent NAME`). Ports, aliases and
# ST_* variables: see the header of scripts/testbed.
#
# Every file lives in $DIR/auth (0700): configs, keys, CAs, certificates, pidfiles, and one log per
# sshd at LogLevel VERBOSE (tests count "Accepted publickey" / "Accepted keyboard-interactive/pam").
# The keyboard-interactive sshd needs a local user with a password (PAM's pam_unix checks
# /etc/shadow): a throwaway system user, made here and removed by `down` (which runs on a failed
# up too). It is recognised by its name AND its home directory inside this testbed's state, so
# `down` never deletes an account it did not make.

readonly AUTH_USERCERT_PORT=2201 AUTH_HOSTCERT_PORT=2202 AUTH_HOSTCERT_BADCA_PORT=2203
readonly AUTH_RSA512_PORT=2204 AUTH_PQ_PORT=2205 AUTH_KBD_PORT=2206
# Certificates must outlive any test run; -5m tolerates a little clock skew between the processes.
readonly AUTH_CERT_VALIDITY=-5m:+1d

auth_dir() { echo "$DIR/auth"; }
# At most 14 characters (NAME has 8), well under useradd's 32; a name no real account uses.
auth_kbd_user() { echo "stkbd-$NAME"; }
auth_kbd_home() { echo "$BASE_DIR/$NAME/auth/kbd-home"; }

# The post-quantum hybrid KEX this OpenSSH has: ML-KEM (OpenSSH ≥ 9.9, the default of 10) when
# present, else sntrup761 (OpenSSH ≥ 8.5; Debian 12's 9.2 has it).
auth_pq_kex() {
  local kex
  kex=$(ssh -Q kex)
  if grep -qx 'mlkem768x25519-sha256' <<<"$kex"; then echo mlkem768x25519-sha256; return; fi
  if grep -qx 'sntrup761x25519-sha512@openssh.com' <<<"$kex"; then echo sntrup761x25519-sha512@openssh.com; return; fi
  die "--auth-variants: this OpenSSH has no post-quantum KEX (needs >= 8.5): $(ssh -V 2>&1)"
}

auth_check_tools() {
  local missing=() tool
  local -A pkg_of=([useradd]=passwd [userdel]=passwd [chpasswd]=passwd [ssh-agent]=openssh-client
    [ssh-add]=openssh-client [getent]=libc-bin)
  for tool in useradd userdel chpasswd ssh-agent ssh-add getent; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_of[$tool]}")
  done
  ((${#missing[@]} == 0)) || die "--auth-variants: missing tools; apt-get install -y $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  # sshd -f still uses PAM service "sshd"; without its file PAM falls back to "other" (deny all).
  [[ -f /etc/pam.d/sshd ]] || die "--auth-variants: no /etc/pam.d/sshd (package openssh-server provides it)"
}

# useradd/userdel/chpasswd lock /etc/passwd and /etc/shadow; other tests make users at the same
# time ("cannot lock /etc/passwd; try again later"): a few tries.
auth_retry() {
  local _
  for _ in 1 2 3 4 5; do
    "$@" && return 0
    sleep 0.3
  done
  return 1
}

# The throwaway user for keyboard-interactive: a system account (no /etc/subuid range, no mail
# spool), shell /bin/sh so `ssh … CMD` runs, a random password set through chpasswd's stdin (never
# on a command line), kept in a root-only file. Its home holds .ssh/authorized_keys with the
# testbed's key; the state directory is root's alone (0700), so sshd cannot read that file as the
# user — AuthorizedKeysCommand reads it as root (see auth_write_sshd_configs). The user's own
# sessions start in / ("Could not chdir to home directory": harmless).
auth_make_user() {
  local user home pw
  user=$(auth_kbd_user)
  home=$(auth_kbd_home)
  # A user of ours without namespaces (cmd_up checked there are none) is a crashed run's leftover.
  if [[ "$(getent passwd "$user" | cut -d: -f6)" == "$home" ]]; then auth_remove_user; fi
  ! getent passwd "$user" >/dev/null || die "a user $user exists and is not this testbed's: refusing to touch it"
  auth_retry useradd --system --user-group --no-create-home --home-dir "$home" --shell /bin/sh \
    --comment "subnet-tunnel testbed $NAME (removed by scripts/testbed down)" "$user" \
    || die "useradd $user failed"
  pw=$(head -c 18 /dev/urandom | base64)
  (umask 077 && printf '%s\n' "$pw" >"$(auth_dir)/kbd-password")
  printf '%s:%s\n' "$user" "$pw" | auth_retry chpasswd || die "chpasswd $user failed"
  mkdir -m 700 "$home" "$home/.ssh"
  cp "$DIR/id_ed25519.pub" "$home/.ssh/authorized_keys"
  chown -R "$user:" "$home"
  # ssh reads the first line of SSH_ASKPASS's output as the answer.
  printf '#!/bin/sh\nexec cat %q\n' "$(auth_dir)/kbd-password" >"$(auth_dir)/kbd-askpass"
  chmod 700 "$(auth_dir)/kbd-askpass"
}

# Removes the throwaway user, if it is this testbed's (name and home both match). Runs at every
# `down`, also when the state directory cannot be read: /etc/passwd alone decides.
auth_remove_user() {
  local user entry
  user=$(auth_kbd_user)
  entry=$(getent passwd "$user" || true)
  [[ -n "$entry" ]] || return 0
  if [[ "$(cut -d: -f6 <<<"$entry")" != "$(auth_kbd_home)" ]]; then
    echo "testbed: down $NAME: a user $user exists that this testbed did not make: left alone" >&2
    return 0
  fi
  # Its sessions ran in the bastion namespace and are gone by now; userdel also drops its group.
  auth_retry userdel "$user" || echo "testbed: down $NAME: userdel $user failed" >&2
}

# sign CA KEY.pub ID SERIAL PRINCIPALS [-h]: a certificate KEY-cert.pub beside the key.
auth_sign() {
  local ca=$1 pub=$2 id=$3 serial=$4 principals=$5
  shift 5
  ssh-keygen -q -s "$ca" -I "$id" -z "$serial" -n "$principals" -V "$AUTH_CERT_VALIDITY" "$@" "$pub"
}

auth_make_keys() {
  local a k
  a=$(auth_dir)
  for k in user_ca host_ca host_ca_other id_usercert id_usercert_file id_agentcert host_cert_key host_badca_key; do
    ssh-keygen -q -t ed25519 -N '' -C "testbed-$NAME-${k//_/-}" -f "$a/$k"
  done
  ssh-keygen -q -t rsa -b 3072 -N '' -C "testbed-$NAME-rsa" -f "$a/id_rsa"
  # User certificates (principal root), one per way of presenting them.
  auth_sign "$a/user_ca" "$a/id_usercert.pub" "testbed-$NAME-usercert" 1 root
  auth_sign "$a/user_ca" "$a/id_usercert_file.pub" "testbed-$NAME-usercert-file" 2 root
  auth_sign "$a/user_ca" "$a/id_agentcert.pub" "testbed-$NAME-agentcert" 3 root
  # The CertificateFile variant: its certificate lives elsewhere, under a name ssh does not guess.
  mkdir -m 700 "$a/certs"
  mv "$a/id_usercert_file-cert.pub" "$a/certs/usercert-file.cert"
  # Host certificates for every name a client may dial; the second one from a CA nobody trusts.
  local names="$BASTION_IP,$BASTION_IP6,$BASTION_HOSTNAME"
  auth_sign "$a/host_ca" "$a/host_cert_key.pub" "testbed-$NAME-hostcert" 1 "$names" -h
  auth_sign "$a/host_ca_other" "$a/host_badca_key.pub" "testbed-$NAME-hostcert-badca" 2 "$names" -h
  cp "$a/id_rsa.pub" "$a/authorized_keys.rsa"
  chmod 600 "$a"/id_* "$a"/*_ca "$a"/*_ca_other "$a"/host_*_key
}

# known_hosts: the variants that use the testbed's plain host key are added to the main
# known_hosts ([ip]:port lines); known_hosts.ca holds ONLY an @cert-authority line — for the
# bastion's addresses and name on port 22 (where the main sshd shows a plain key: refused) and on
# the two host-certificate ports.
auth_write_known_hosts() {
  local a host_pub port pat=() h
  a=$(auth_dir)
  host_pub=$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")
  for port in "$AUTH_USERCERT_PORT" "$AUTH_RSA512_PORT" "$AUTH_PQ_PORT" "$AUTH_KBD_PORT"; do
    printf '[%s]:%s %s\n' "$BASTION_IP" "$port" "$host_pub" "$BASTION_IP6" "$port" "$host_pub" >>"$DIR/known_hosts"
  done
  for h in "$BASTION_IP" "$BASTION_IP6" "$BASTION_HOSTNAME"; do
    pat+=("$h" "[$h]:$AUTH_HOSTCERT_PORT" "[$h]:$AUTH_HOSTCERT_BADCA_PORT")
  done
  printf '@cert-authority %s %s\n' "$(IFS=,; echo "${pat[*]}")" "$(cut -d' ' -f1,2 "$a/host_ca.pub")" >"$a/known_hosts.ca"
}

# auth_sshd_config VARIANT PORT: the common part of a variant's sshd_config, on stdout.
auth_sshd_config() {
  local a variant=$1 port=$2
  a=$(auth_dir)
  cat <<EOF
# generated by scripts/testbed --auth-variants for $NAME: $variant
Port $port
ListenAddress $BASTION_IP
ListenAddress $BASTION_IP6
PidFile $a/sshd-$variant.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
AllowTcpForwarding yes
PrintMotd no
LogLevel VERBOSE
MaxStartups 100:30:200
ClientAliveInterval 5
ClientAliveCountMax 3
EOF
}

auth_write_sshd_configs() {
  local a pq
  a=$(auth_dir)
  pq=$(auth_pq_kex)
  { auth_sshd_config usercert "$AUTH_USERCERT_PORT"; cat <<EOF
HostKey $DIR/ssh_host_ed25519_key
# Only certificates signed by the user CA: no authorized_keys at all.
AuthorizedKeysFile none
TrustedUserCAKeys $a/user_ca.pub
KbdInteractiveAuthentication no
UsePAM no
EOF
  } >"$a/sshd_config.usercert"
  { auth_sshd_config hostcert "$AUTH_HOSTCERT_PORT"; cat <<EOF
HostKey $a/host_cert_key
HostCertificate $a/host_cert_key-cert.pub
AuthorizedKeysFile $DIR/authorized_keys
KbdInteractiveAuthentication no
UsePAM no
EOF
  } >"$a/sshd_config.hostcert"
  { auth_sshd_config hostcert-badca "$AUTH_HOSTCERT_BADCA_PORT"; cat <<EOF
HostKey $a/host_badca_key
HostCertificate $a/host_badca_key-cert.pub
AuthorizedKeysFile $DIR/authorized_keys
KbdInteractiveAuthentication no
UsePAM no
EOF
  } >"$a/sshd_config.hostcert-badca"
  { auth_sshd_config rsa512 "$AUTH_RSA512_PORT"; cat <<EOF
HostKey $DIR/ssh_host_ed25519_key
# Host key algorithms stay the defaults; only the user's RSA signature must be rsa-sha2-512.
PubkeyAcceptedAlgorithms rsa-sha2-512
AuthorizedKeysFile $a/authorized_keys.rsa
KbdInteractiveAuthentication no
UsePAM no
EOF
  } >"$a/sshd_config.rsa512"
  { auth_sshd_config pq "$AUTH_PQ_PORT"; cat <<EOF
HostKey $DIR/ssh_host_ed25519_key
KexAlgorithms $pq
AuthorizedKeysFile $DIR/authorized_keys
KbdInteractiveAuthentication no
UsePAM no
EOF
  } >"$a/sshd_config.pq"
  # PAM service "sshd" (/etc/pam.d/sshd → pam_unix): keyboard-interactive asks "Password:".
  # AuthorizedKeysCommand instead of AuthorizedKeysFile: sshd opens authorized_keys files as the
  # user, who cannot enter the root-only state directory; the command runs as root (%h: home).
  local cat_bin=/usr/bin/cat
  [[ -x $cat_bin ]] || cat_bin=/bin/cat
  { auth_sshd_config kbd "$AUTH_KBD_PORT"; cat <<EOF
HostKey $DIR/ssh_host_ed25519_key
AllowUsers $(auth_kbd_user)
AuthorizedKeysFile none
AuthorizedKeysCommand $cat_bin %h/.ssh/authorized_keys
AuthorizedKeysCommandUser root
UsePAM yes
KbdInteractiveAuthentication yes
AuthenticationMethods publickey,keyboard-interactive
EOF
  } >"$a/sshd_config.kbd"
}

# alias NAME PORT KNOWN_HOSTS [extra ssh_config lines…]: one Host block on stdout.
auth_alias() {
  local alias=$1 port=$2 kh=$3 line
  shift 3
  printf 'Host %s\n  HostName %s\n  Port %s\n' "$alias" "$BASTION_IP" "$port"
  for line in "$@"; do printf '  %s\n' "$line"; done
  # UpdateHostKeys no: nothing ever adds a raw key to known_hosts.ca behind the tests' back.
  printf '  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  UpdateHostKeys no\n\n' "$kh"
}

auth_write_ssh_config() {
  local a kh="$DIR/known_hosts" root='User root' only='IdentitiesOnly yes'
  a=$(auth_dir)
  {
    echo "# --auth-variants (scripts/testbed-auth.bash)"
    auth_alias bastion-cert "$AUTH_USERCERT_PORT" "$kh" "$root" "IdentityFile $a/id_usercert" "$only"
    auth_alias bastion-cert-file "$AUTH_USERCERT_PORT" "$kh" "$root" "IdentityFile $a/id_usercert_file" \
      "CertificateFile $a/certs/usercert-file.cert" "$only"
    # Identities from the agent in $SSH_AUTH_SOCK only (scripts/testbed agent NAME): no IdentityFile.
    auth_alias bastion-cert-agent "$AUTH_USERCERT_PORT" "$kh" "$root" 'IdentitiesOnly no'
    auth_alias bastion-hostcert "$AUTH_HOSTCERT_PORT" "$a/known_hosts.ca" "$root" "IdentityFile $DIR/id_ed25519" "$only"
    auth_alias bastion-hostcert-badca "$AUTH_HOSTCERT_BADCA_PORT" "$a/known_hosts.ca" "$root" "IdentityFile $DIR/id_ed25519" "$only"
    auth_alias bastion-hostcert-plain 22 "$a/known_hosts.ca" "$root" "IdentityFile $DIR/id_ed25519" "$only"
    auth_alias bastion-rsa512 "$AUTH_RSA512_PORT" "$kh" "$root" "IdentityFile $a/id_rsa" "$only"
    auth_alias bastion-pq "$AUTH_PQ_PORT" "$kh" "$root" "IdentityFile $DIR/id_ed25519" "$only"
    auth_alias bastion-kbd "$AUTH_KBD_PORT" "$kh" "User $(auth_kbd_user)" "IdentityFile $DIR/id_ed25519" "$only" \
      'PasswordAuthentication no' 'KbdInteractiveAuthentication yes'
  } >>"$DIR/ssh_config"
}

# Everything before the daemons start: keys, certificates, the user, configs, known_hosts, aliases.
auth_setup() {
  auth_check_tools
  mkdir -m 700 "$(auth_dir)"
  auth_make_keys
  auth_make_user
  auth_write_known_hosts
  auth_write_sshd_configs
  auth_write_ssh_config
}

auth_variants() { echo usercert hostcert hostcert-badca rsa512 pq kbd; }

auth_port() {
  case $1 in
    usercert) echo "$AUTH_USERCERT_PORT" ;; hostcert) echo "$AUTH_HOSTCERT_PORT" ;;
    hostcert-badca) echo "$AUTH_HOSTCERT_BADCA_PORT" ;; rsa512) echo "$AUTH_RSA512_PORT" ;;
    pq) echo "$AUTH_PQ_PORT" ;; kbd) echo "$AUTH_KBD_PORT" ;;
  esac
}

# One sshd per variant in the bastion namespace, logging to $DIR/auth/sshd-VARIANT.log.
auth_start_sshds() {
  local a v pid
  a=$(auth_dir)
  for v in $(auth_variants); do
    /usr/sbin/sshd -t -f "$a/sshd_config.$v" || die "sshd rejected $a/sshd_config.$v"
    ip netns exec "$(ns bastion)" /usr/sbin/sshd -D -e -f "$a/sshd_config.$v" </dev/null >>"$a/sshd-$v.log" 2>&1 &
    pid=$!
    record_pid "sshd-$v" "$pid"
  done
}

auth_wait_sshds() {
  local v
  for v in $(auth_variants); do wait_listen bastion "$(auth_port "$v")" "sshd ($v)"; done
}

# "KEY value" lines for write_env.
auth_env_lines() {
  local a
  a=$(auth_dir)
  cat <<EOF
ST_USER_CA $a/user_ca.pub
ST_HOST_CA $a/host_ca.pub
ST_USERCERT_PORT $AUTH_USERCERT_PORT
ST_USERCERT_LOG $a/sshd-usercert.log
ST_USERCERT_KEY $a/id_usercert
ST_USERCERT_CERT $a/id_usercert-cert.pub
ST_USERCERT_FILE_KEY $a/id_usercert_file
ST_USERCERT_FILE_CERT $a/certs/usercert-file.cert
ST_AGENT_KEY $a/id_agentcert
ST_AGENT_CERT $a/id_agentcert-cert.pub
ST_HOSTCERT_PORT $AUTH_HOSTCERT_PORT
ST_HOSTCERT_LOG $a/sshd-hostcert.log
ST_HOSTCERT_BADCA_PORT $AUTH_HOSTCERT_BADCA_PORT
ST_HOSTCERT_BADCA_LOG $a/sshd-hostcert-badca.log
ST_KNOWN_HOSTS_CA $a/known_hosts.ca
ST_RSA512_PORT $AUTH_RSA512_PORT
ST_RSA512_LOG $a/sshd-rsa512.log
ST_SSH_KEY_RSA $a/id_rsa
ST_PQ_PORT $AUTH_PQ_PORT
ST_PQ_LOG $a/sshd-pq.log
ST_PQ_KEX $(auth_pq_kex)
ST_KBD_PORT $AUTH_KBD_PORT
ST_KBD_LOG $a/sshd-kbd.log
ST_KBD_USER $(auth_kbd_user)
ST_KBD_PASSWORD_FILE $a/kbd-password
ST_KBD_ASKPASS $a/kbd-askpass
EOF
}

# `scripts/testbed agent NAME [--cert-only]`: an ssh-agent in the client namespace (its pid in
# $DIR/pids, so `down` ends it) with a socket in $DIR/auth, holding the key and certificate
# ST_AGENT_KEY / ST_AGENT_CERT — with --cert-only, the certificate identity alone (ssh-add -k -d
# drops the plain key: OpenSSH 9.2's ssh-add has no -C). Prints SSH_AUTH_SOCK='…' and
# SSH_AGENT_PID='…'. Stop it with kill PID, or leave it to `down`.
cmd_agent() {
  local cert_only=0 a sock pid i
  while (($#)); do
    case "$1" in --cert-only) cert_only=1 ;; *) usage ;; esac
    shift
  done
  require_root
  check_base || die "testbed '$NAME' is not up (no $BASE_DIR)"
  a=$(auth_dir)
  [[ -d "$a" && ! -L "$a" && -f "$a/id_agentcert" ]] || die "testbed '$NAME' has no auth variants: up it with --auth-variants"
  [[ -z "$(unsafe_dir "$DIR" 0)" && -z "$(unsafe_dir "$a" 0)" ]] || die "$a: not root's alone: refused"
  sock=$(mktemp -u -p "$a" agent-XXXXXXXX.sock)
  ip netns exec "$(ns client)" ssh-agent -D -a "$sock" </dev/null >>"$a/agent.log" 2>&1 &
  pid=$!
  record_pid agent "$pid"
  for ((i = 0; i < 100; i++)); do
    [[ -S "$sock" ]] && break
    sleep 0.02
  done
  if ! [[ -S "$sock" ]] ||
    ! SSH_AUTH_SOCK=$sock ssh-add -q "$a/id_agentcert" </dev/null >>"$a/agent.log" 2>&1 ||
    { ((cert_only)) && ! SSH_AUTH_SOCK=$sock ssh-add -q -k -d "$a/id_agentcert.pub" </dev/null >>"$a/agent.log" 2>&1; }; then
    kill -TERM "$pid" 2>/dev/null || true
    die "agent: ssh-agent or ssh-add failed (see $a/agent.log)"
  fi
  printf 'SSH_AUTH_SOCK=%s\nSSH_AGENT_PID=%s\n' "$(st_env_quote "$sock")" "$(st_env_quote "$pid")"
}
