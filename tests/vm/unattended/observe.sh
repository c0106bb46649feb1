# Guest side of vm_unattended (crates/ociboot/tests/vm_unattended.rs): functions the test's
# step scripts use (the step disk holds this file followed by the boot's own lines). They
# only look: print what the host checks, tagged, on the step's port (ttyS1).
SVC=ociboot-fetch-apply-updates.service

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# Bytes received and sent on the guest's network (its only peer is the registry).
# (/proc/net/dev: "IFACE: rx_bytes rx_packets ... (8 rx fields) tx_bytes ...", the name
# right-aligned in 6 columns, so leading blanks or none.)
net_bytes() {
    sed 's/^ *//' /proc/net/dev |
        awk -F'[: ]+' 'NR > 2 && $1 != "lo" { s += $2 + $10 } END { print s + 0 }'
}

# What this boot is: the image's release file, ociboot's status, the entries on the ESP, the
# bless state, the health units' results and their journal.
report() {
    echo "RELEASE $(cat /usr/share/unattended/release 2>/dev/null || echo 1)"
    echo "CMDLINE $(cat /proc/cmdline)"
    echo "OCIBOOT-JSON $(ociboot status --json)"
    ociboot status
    echo "ENTRIES $(ls /boot/loader/entries | tr '\n' ' ')"
    echo "BLESS $(/usr/lib/systemd/systemd-bless-boot status 2>&1)"
    echo "BOOT-COMPLETE $(systemctl is-active boot-complete.target)"
    for u in ociboot-health.service ociboot-health-assess.service systemd-bless-boot.service; do
        echo "UNIT $u $(systemctl show -P ActiveState $u) $(systemctl show -P Result $u)"
    done
    echo "V3-TRIES $(cat /var/lib/unattended-v3/tries 2>/dev/null || echo 0)"
    journalctl -b -o cat --no-pager -u ociboot-health.service -u ociboot-health-assess.service \
        | sed 's/^/HEALTH /'
}

# The timer's schedule as systemd has it.
schedule() {
    echo "TIMER $(systemctl is-enabled ociboot-fetch-apply-updates.timer) $(systemctl is-active ociboot-fetch-apply-updates.timer)"
    echo "SCHEDULE $(systemctl show -P TimersMonotonic ociboot-fetch-apply-updates.timer)"
    echo "RANDOM-DELAY $(systemctl show -P RandomizedDelayUSec ociboot-fetch-apply-updates.timer)"
}

# The units' journal, followed, onto the step's port.
follow_journal() {
    journalctl -f -n all -b -o short-monotonic --no-pager -u "$SVC" \
        -u ociboot-health.service -u ociboot-health-assess.service -u systemd-bless-boot.service \
        -u ociboot-finalize-staged.service | sed -u 's/^/JOURNAL /' &
}

# The timer's runs, one line each: TIMER-STARTED when a run is seen at work, TIMER-PULLING
# while it runs once the guest has moved more than $1 bytes (when $1 is given), TIMER-RUN when it has ended (its
# exit status, its start and end in µs of guest uptime); also appended to /run/unattended-runs.
watch_timer() {
    pull_at=${1:-} prev=0 n=0 seen=
    while :; do
        S_ActiveState= S_ExecMainStatus= S_ExecMainStartTimestampMonotonic= S_ExecMainExitTimestampMonotonic=0
        # One systemctl call per look (each costs under emulation): S_ActiveState, S_ExecMain*.
        eval "$(systemctl show -p ActiveState -p ExecMainStatus -p ExecMainStartTimestampMonotonic \
            -p ExecMainExitTimestampMonotonic "$SVC" | sed -n 's/^\([A-Za-z]*\)=\([a-z0-9]*\)$/S_\1=\2/p')"
        if [ "$S_ActiveState" = activating ] || [ "$S_ActiveState" = active ]; then
            if [ -z "$seen" ]; then
                seen=1
                echo "TIMER-STARTED uptime=$(uptime_s)"
            fi
            # (bytes since boot: nothing else but DHCP has used the network)
            if [ -n "$pull_at" ] && [ "$(net_bytes)" -gt "$pull_at" ]; then
                echo "TIMER-PULLING bytes=$(net_bytes) uptime=$(uptime_s)"
                pull_at=
            fi
        elif [ "${S_ExecMainExitTimestampMonotonic:-0}" != 0 ] && [ "$S_ExecMainExitTimestampMonotonic" != "$prev" ]; then
            n=$((n + 1)) prev=$S_ExecMainExitTimestampMonotonic seen=
            echo "TIMER-RUN n=$n rc=$S_ExecMainStatus start=$S_ExecMainStartTimestampMonotonic exit=$prev uptime=$(uptime_s)"
            echo "$S_ExecMainStatus" >>/run/unattended-runs
        fi
        sleep 0.25
    done
}

# Wait (at most $1 s) until a run has failed and a later one has succeeded.
wait_fail_then_success() {
    i=0
    while [ $i -lt $(( $1 * 2 )) ]; do
        if awk '$1 != 0 { f = 1 } f && $1 == 0 { ok = 1 } END { exit !ok }' /run/unattended-runs 2>/dev/null; then
            echo "RUNS $(tr '\n' ' ' </run/unattended-runs)"
            return 0
        fi
        sleep 0.5
        i=$((i + 1))
    done
    echo "RUNS-TIMEOUT $(tr '\n' ' ' </run/unattended-runs 2>/dev/null)"
    return 1
}
