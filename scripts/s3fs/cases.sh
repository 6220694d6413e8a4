# s3fs integration suite, part 2 of 3: the file-operation cases and their helpers.
# Sourced by scripts/test_s3fs_integration.sh; each case runs in its own bash under timeout,
# so everything a case calls is exported.
# The cases check what ls itself shows, so ls | grep is the point:
# shellcheck shell=bash disable=SC2010,SC2012

# --- helpers the cases use (exported: each case runs in its own bash under timeout) ------
fail() { echo "  $*" >&2; return 1; }
eq() { # expected actual what
    [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}
near_now() { # epoch-seconds what: within a minute of now
    local t=$1 now; now=$(date +%s)
    if [ $((t - now)) -gt 60 ] || [ $((now - t)) -gt 60 ]; then fail "$2: time $t is not now ($now)"; fi
}
md5() { md5sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# remember what a file must hold after a remount
expect_md5() { local id; id=$(printf '%s' "$1" | md5sum | cut -c1-16); printf '%s\n%s\n' "$1" "$(md5 "$1")" >"$W/expect/$id"; }
randfile() { head -c "$2" /dev/urandom >"$1"; }
# compare N random ranges of a mounted file with the local reference
ranged_reads() { # mounted local count
    local m=$1 l=$2 n=$3 sz off len i
    sz=$(size "$l")
    for i in $(seq 1 "$n"); do
        off=$(( (RANDOM * 32768 + RANDOM) % sz ))
        len=$(( (RANDOM % 300000) + 1 ))
        # dd reads exactly this range (tail | head would read on until SIGPIPE)
        cmp <(dd if="$m" bs=64k iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none) \
            <(dd if="$l" bs=64k iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none) \
            || fail "range $off+$len differs"
    done
}
MARKER="s3proxy-plaintext-marker-$RANDOM$RANDOM"
export AK SK ENDPOINT BAK BSK MOTO_ENDPOINT REPLICA_ENDPOINT STATE PIDS WORK MARKER
export TLS_DIR TLS_ENDPOINT IMPOSTOR_ENDPOINT BIN EC_STATE
EC_ENDPOINT_LIST="${EC_ENDPOINTS[*]}"   # arrays are not exported
export EC_ENDPOINT EC_ENDPOINT_LIST
export -f fail eq near_now md5 size expect_md5 randfile ranged_reads s3curl kill_replica unmount_one

# Cases that fail because of s3fs itself, not the server, with the reason. They still run
# and are reported; a pass is a pass.
declare -A KNOWN_LIMITS=()

# ==== cases ==============================================================================
# Each runs with the mount ($M) as working directory, under set -euo pipefail.
# $L is a local scratch directory on another filesystem; $W the work dir.

# --- new files ---
t_new_echo() {
    mkdir -p new; echo "hello s3fs" >new/echo.txt
    eq 11 "$(stat -c %s new/echo.txt)" "stat size"
    eq "hello s3fs" "$(cat new/echo.txt)" "content"
    local line; line=$(ls -la --time-style=+%s new/echo.txt)
    eq 11 "$(echo "$line" | awk '{print $5}')" "ls -la size"
    near_now "$(echo "$line" | awk '{print $6}')" "ls -la time"
    near_now "$(stat -c %Y new/echo.txt)" "stat mtime"
    expect_md5 new/echo.txt
}
t_new_touch() {
    touch new/touched
    [ -f new/touched ] || fail "not a regular file"
    eq 0 "$(stat -c %s new/touched)" "size"
    near_now "$(stat -c %Y new/touched)" "mtime"
    ls -la new | grep -q ' touched$' || fail "not listed"
    expect_md5 new/touched
}
t_new_cp() {
    randfile "$L/cp.src" 100000
    cp "$L/cp.src" new/cp.bin
    eq 100000 "$(size new/cp.bin)" "size"
    cmp "$L/cp.src" new/cp.bin
    cp -p "$L/cp.src" new/cp-p.bin
    eq "$(stat -c %Y "$L/cp.src")" "$(stat -c %Y new/cp-p.bin)" "cp -p mtime"
    expect_md5 new/cp.bin
}
t_new_dd() {
    randfile "$L/dd.src" 1048576
    dd if="$L/dd.src" of=new/dd.bin bs=64k status=none
    eq 1048576 "$(size new/dd.bin)" "size"
    cmp "$L/dd.src" new/dd.bin
    dd if=/dev/zero of=new/dd-count.bin bs=4k count=3 status=none
    eq 12288 "$(size new/dd-count.bin)" "size of bs=4k count=3"
    expect_md5 new/dd.bin
}
t_new_tee() {
    echo one | tee -a new/tee.txt >/dev/null
    echo two | tee -a new/tee.txt >/dev/null
    eq "$(printf 'one\ntwo')" "$(cat new/tee.txt)" "content"
    eq 8 "$(size new/tee.txt)" "size"
    expect_md5 new/tee.txt
}
t_new_rename() {
    echo "renamed" >new/before.txt
    mv new/before.txt new/after.txt
    [ ! -e new/before.txt ] || fail "old name still exists"
    eq renamed "$(cat new/after.txt)" "content"
    eq 8 "$(size new/after.txt)" "size"
    expect_md5 new/after.txt
}
t_new_mv_from_other_fs() {
    randfile "$L/moved.bin" 70000
    local sum; sum=$(md5 "$L/moved.bin")
    touch -d "2010-01-02 03:04:05 UTC" "$L/moved.bin"
    mv "$L/moved.bin" new/moved.bin
    [ ! -e "$L/moved.bin" ] || fail "source still exists"
    eq "$sum" "$(md5 new/moved.bin)" "checksum"
    eq 1262401445 "$(stat -c %Y new/moved.bin)" "mtime kept by mv"
    mv new/moved.bin "$L/moved-back.bin"
    [ ! -e new/moved.bin ] || fail "mv out left the file"
    eq "$sum" "$(md5 "$L/moved-back.bin")" "checksum after mv out"
}

# --- existing files ---
t_overwrite() {
    randfile "$L/ow" 5000; cp "$L/ow" exist-ow.bin
    echo short >exist-ow.bin
    eq 6 "$(size exist-ow.bin)" "size"
    eq short "$(cat exist-ow.bin)" "content"
    expect_md5 exist-ow.bin
}
t_append() {
    printf 'a' >exist-ap.txt
    for i in 1 2 3 4 5; do printf '%s' "$i" >>exist-ap.txt; done
    eq a12345 "$(cat exist-ap.txt)" "content"
    eq 6 "$(size exist-ap.txt)" "size"
    expect_md5 exist-ap.txt
}
t_truncate_smaller() {
    randfile "$L/tr" 10000; cp "$L/tr" exist-trs.bin
    truncate -s 1000 exist-trs.bin; truncate -s 1000 "$L/tr"
    eq 1000 "$(size exist-trs.bin)" "size"
    cmp "$L/tr" exist-trs.bin
    truncate -s 0 "$L/tr"; : >exist-trs0.bin
    eq 0 "$(size exist-trs0.bin)" "size after : >"
    expect_md5 exist-trs.bin
}
t_truncate_larger() {
    randfile "$L/tl" 1000; cp "$L/tl" exist-trl.bin
    truncate -s 300000 exist-trl.bin; truncate -s 300000 "$L/tl"
    eq 300000 "$(size exist-trl.bin)" "size"
    cmp "$L/tl" exist-trl.bin
    expect_md5 exist-trl.bin
}
t_random_writes() {
    randfile "$L/rw" 2000000; cp "$L/rw" exist-rw.bin
    local i off len
    for i in $(seq 1 12); do
        off=$(( (RANDOM * 32768 + RANDOM) % 2300000 ))   # some land past the end
        len=$(( RANDOM % 5000 + 1 ))
        randfile "$L/patch" "$len"
        dd if="$L/patch" of=exist-rw.bin bs=1 seek="$off" conv=notrunc status=none
        dd if="$L/patch" of="$L/rw" bs=1 seek="$off" conv=notrunc status=none
    done
    eq "$(size "$L/rw")" "$(size exist-rw.bin)" "size"
    eq "$(md5 "$L/rw")" "$(md5 exist-rw.bin)" "checksum"
    expect_md5 exist-rw.bin
}

# --- metadata (checked again after the remount by t_meta_after_remount) ---
t_chmod() {
    echo x >meta-chmod; chmod 640 meta-chmod
    eq 640 "$(stat -c %a meta-chmod)" "mode"
    chmod u+x,o+r meta-chmod
    eq 744 "$(stat -c %a meta-chmod)" "mode after u+x,o+r"
    eq x "$(cat meta-chmod)" "content kept"
    mkdir -p meta-dir; chmod 750 meta-dir
    eq 750 "$(stat -c %a meta-dir)" "directory mode"
}
t_chown() {
    echo x >meta-chown; chown 1234:2345 meta-chown
    eq 1234:2345 "$(stat -c %u:%g meta-chown)" "owner"
    eq x "$(cat meta-chown)" "content kept"
}
t_touch_d() {
    echo x >meta-touch; touch -d "2001-02-03 04:05:06 UTC" meta-touch
    eq 981173106 "$(stat -c %Y meta-touch)" "mtime"
    eq x "$(cat meta-touch)" "content kept"
}
t_utimes() {
    echo x >meta-utimes
    python3 -c 'import os,sys; os.utime(sys.argv[1], (1234567890, 1234567890))' meta-utimes
    eq 1234567890 "$(stat -c %Y meta-utimes)" "mtime"
}
t_mkdir_rmdir() {
    mkdir dir-a
    [ -d dir-a ] || fail "not a directory"
    ls -la | grep -q ' dir-a$' || fail "not listed"
    rmdir dir-a
    [ ! -e dir-a ] || fail "still there after rmdir"
    mkdir dir-b; echo x >dir-b/f
    if rmdir dir-b 2>/dev/null; then fail "rmdir of a non-empty directory succeeded"; fi
    rm dir-b/f; rmdir dir-b
    [ ! -e dir-b ] || fail "still there"
}
t_nested_dirs() {
    mkdir -p nest/a/b/c/d
    echo deep >nest/a/b/c/d/f.txt
    eq deep "$(cat nest/a/b/c/d/f.txt)" "content"
    eq "nest/a nest/a/b nest/a/b/c nest/a/b/c/d nest/a/b/c/d/f.txt" "$(find nest -mindepth 1 | sort | tr '\n' ' ' | sed 's/ $//')" "find"
    eq b "$(ls nest/a)" "ls nest/a"
    expect_md5 nest/a/b/c/d/f.txt
}
t_rename_dir() {
    mkdir -p rdir/sub; echo 1 >rdir/one; echo 2 >rdir/sub/two; chmod 700 rdir/sub
    mv rdir rdir2
    [ ! -e rdir ] || fail "old directory still exists"
    eq 1 "$(cat rdir2/one)" "one"; eq 2 "$(cat rdir2/sub/two)" "sub/two"
    eq 700 "$(stat -c %a rdir2/sub)" "mode of moved subdirectory"
    eq "one sub" "$(ls rdir2 | tr '\n' ' ' | sed 's/ $//')" "listing"
    expect_md5 rdir2/sub/two
}
t_symlink() {
    echo target-data >sym-target
    ln -s sym-target sym-link
    ln -s does-not-exist sym-dangling
    [ -L sym-link ] || fail "not a symlink"
    eq sym-target "$(readlink sym-link)" "readlink"
    eq target-data "$(cat sym-link)" "read through link"
    eq does-not-exist "$(readlink sym-dangling)" "dangling readlink"
    mkdir -p symdir; ln -s ../sym-target symdir/up
    eq target-data "$(cat symdir/up)" "relative link from subdir"
}
t_hardlink_refused() {
    echo x >hl-src
    if ln hl-src hl-dst 2>/dev/null; then fail "hard link succeeded (s3fs cannot keep one)"; fi
    [ ! -e hl-dst ] || fail "a link target appeared"
}
t_meta_after_remount() {
    eq 744 "$(stat -c %a meta-chmod)" "chmod"
    eq 750 "$(stat -c %a meta-dir)" "directory chmod"
    eq 1234:2345 "$(stat -c %u:%g meta-chown)" "chown"
    eq 981173106 "$(stat -c %Y meta-touch)" "touch -d"
    eq 1234567890 "$(stat -c %Y meta-utimes)" "utimes"
    eq sym-target "$(readlink sym-link)" "symlink"
    eq target-data "$(cat sym-link)" "symlink target"
    eq 700 "$(stat -c %a rdir2/sub)" "renamed directory mode"
    eq "$(stat -c %Y "$L/cp.src")" "$(stat -c %Y new/cp-p.bin)" "cp -p mtime"
}
t_content_after_remount() {
    local f path want n=0
    for f in "$W"/expect/*; do
        path=$(sed -n 1p "$f"); want=$(sed -n 2p "$f")
        [ -e "$path" ] || fail "$path is gone"
        eq "$want" "$(md5 "$path")" "checksum of $path"
        n=$((n + 1))
    done
    [ "$n" -gt 10 ] || fail "only $n files recorded"
}

# --- edge names ---
edge_name() { # a file with this name: create, list, read, rename, delete
    local n=$1
    mkdir -p edge; echo "$n" >"edge/$n"
    eq "$n" "$(cat "edge/$n")" "content"
    ls edge | grep -qxF "$n" || fail "'$n' not listed as such: $(ls edge | tr '\n' '|')"
    mv "edge/$n" "edge/$n.moved"
    eq "$n" "$(cat "edge/$n.moved")" "content after rename"
    mkdir -p "edge/d $n"; echo in >"edge/d $n/in"
    eq in "$(cat "edge/d $n/in")" "file in a directory with that name"
    rm -r "edge/$n.moved" "edge/d $n"
    [ ! -e "edge/$n.moved" ] || fail "still there after rm"
}
export -f edge_name
t_name_spaces() { edge_name "a name  with spaces "; }
t_name_unicode() { edge_name "héllo wörld 日本語 ✓ ñ"; }
t_name_percent() { edge_name "100%25 %20 %"; }
t_name_plus() { edge_name "a+b+c"; }
t_name_hash() { edge_name "#hash#"; }
t_name_misc() { edge_name "q?a&b=c;d'e\"f[g]{h}~!@\$^(x),'"; }
t_name_long() { edge_name "$(printf 'L%.0s' $(seq 1 240))"; }
t_deep_path() {
    local p=deep i
    for i in $(seq 1 30); do p="$p/d$i"; done
    mkdir -p "$p"; echo bottom >"$p/f"
    eq bottom "$(cat "$p/f")" "content"
    eq 31 "$(find deep -type d | wc -l)" "directories"
    expect_md5 "$p/f"
}
t_empty_file() {
    : >empty.bin
    eq 0 "$(size empty.bin)" "size"; eq "" "$(cat empty.bin)" "content"
    [ -f empty.bin ] || fail "not a regular file"
}
t_zero_byte_dirlike() {
    # A 0-byte file whose name reads like a directory's: it must stay a file (also after
    # the remount, see t_dirlike_after_remount), and an empty directory a directory.
    touch dirlike; mkdir dirlike.d
    if [ ! -f dirlike ] || [ -d dirlike ]; then fail "dirlike is not a regular file"; fi
    [ -d dirlike.d ] || fail "dirlike.d is not a directory"
    # Objects written by other S3 clients: "rawdir/" (0 bytes, no content type) and a key
    # under a prefix that has no directory object at all.
    # (curl would label the body application/x-www-form-urlencoded: send no type at all)
    s3curl -f -X PUT -H "Content-Type:" --data-binary '' "$S3URL/rawdir/" -o /dev/null
    s3curl -f -X PUT -H "Content-Type:" --data-binary 'child' "$S3URL/implicit/child.txt" -o /dev/null
    [ -d rawdir ] || fail "rawdir/ is not a directory"
    [ -d implicit ] || fail "implicit/ is not a directory"
    eq child "$(cat implicit/child.txt)" "implicit/child.txt"
    ls | grep -qx implicit || fail "implicit not listed"
}
t_dirlike_after_remount() {
    if [ ! -f dirlike ] || [ -d dirlike ]; then fail "dirlike is not a regular file"; fi
    [ -d dirlike.d ] || fail "dirlike.d is not a directory"
    [ -f empty.bin ] || fail "empty.bin is not a regular file"
    eq 0 "$(size empty.bin)" "empty.bin size"
}

# --- large files ---
large_file() { # size-in-MB name
    local mb=$1 name=$2
    mkdir -p large
    [ -f "$L/$name" ] || head -c "$((mb * 1048576))" /dev/urandom >"$L/$name"
    cp "$L/$name" "large/$name"
    eq "$((mb * 1048576))" "$(size "large/$name")" "size"
    mv "large/$name" "large/$name.renamed"
    [ ! -e "large/$name" ] || fail "old name exists after rename"
    eq "$(md5 "$L/$name")" "$(md5 "large/$name.renamed")" "checksum after rename"
    expect_md5 "large/$name.renamed"
}
export -f large_file
t_large_25m() { large_file 25 f25m; }
t_large_200m() { large_file 200 f200m; }
t_large_huge() { large_file 1100 f1100m; }
t_large_ranges_after_remount() {
    local f
    for f in "$L"/f*m; do
        [ -f "large/$(basename "$f").renamed" ] || continue
        ranged_reads "large/$(basename "$f").renamed" "$f" 12
    done
}
t_multipart_copy_rename() {
    # Rename above singlepart_copy_limit uses UploadPartCopy with x-amz-copy-source-range;
    # a second mount with a low limit exercises it without a 512 MB file.
    local sum; sum=$(md5 "$L/f25m")
    eq "$sum" "$(md5 "$MC/large/f25m.renamed")" "checksum via the second mount"
    mv "$MC/large/f25m.renamed" "$MC/large/f25m.mpcopy"
    eq "$sum" "$(md5 "$MC/large/f25m.mpcopy")" "checksum after multipart copy"
    grep -q "UploadPartCopy PUT /$BUCKET/large/f25m.mpcopy" "$MODE_LOG" || fail "no UploadPartCopy seen in the proxy log"
    mv "$MC/large/f25m.mpcopy" "$MC/large/f25m.renamed"
}

# --- a second mount (default mode): other s3fs options, and what one client sees of another
t_cross_mount_new_file() {
    # Written on one mount, seen at once, with its size, on another (no shared cache).
    echo "from mount one" >"$M/cross.txt"
    eq 15 "$(stat -c %s "$MC/cross.txt")" "size on the second mount"
    eq "from mount one" "$(cat "$MC/cross.txt")" "content on the second mount"
    randfile "$L/cross.bin" 3000000; cp "$L/cross.bin" "$MC/cross.bin"
    cmp "$L/cross.bin" "$M/cross.bin"
    # An overwrite is visible to any S3 client at once (s3fs itself caches stat results).
    echo "second version" >"$M/cross.txt"
    eq 15 "$(s3curl -f -I "$S3URL/cross.txt" | tr -d '\r' | awk 'tolower($1)=="content-length:" {print $2}')" "HEAD size after overwrite"
}
t_xattr() {
    # -o use_xattr keeps extended attributes in x-amz-meta-xattr (URL-encoded JSON).
    echo x >"$MC/xattr.txt"
    setfattr -n user.color -v "blue green" "$MC/xattr.txt"
    setfattr -n user.other -v 0x00ff10 "$MC/xattr.txt"
    eq "blue green" "$(getfattr --only-values -n user.color "$MC/xattr.txt")" "getfattr"
    getfattr -d "$MC/xattr.txt" 2>/dev/null | grep -q '^user.other=' || fail "user.other not listed"
    s3curl -f -I "$S3URL/xattr.txt" | grep -qi '^x-amz-meta-xattr:.*user.color' || fail "not stored as x-amz-meta-xattr"
    setfattr -x user.color "$MC/xattr.txt"
    if getfattr -n user.color "$MC/xattr.txt" 2>/dev/null; then fail "removed attribute still there"; fi
    eq x "$(cat "$MC/xattr.txt")" "content kept"
}
t_xattr_empty_value() {
    echo x >"$MC/xattr-empty.txt"
    setfattr -n user.empty "$MC/xattr-empty.txt" || true
    getfattr -d "$MC/xattr-empty.txt" 2>/dev/null | grep -q '^user.empty' || fail "user.empty (empty value) not kept"
}
KNOWN_LIMITS[t_xattr_empty_value]="s3fs 1.90 s3fs_setxattr rejects a 0-byte value ('Wrong parameter: value, size(0)') before any request is sent"

t_list_head_agree() {
    # What LIST says of every object (size, ETag) is what HEAD says, multipart ones included.
    local listing n=0 enc size etag head hsize hetag
    listing=$(s3curl -f "$S3URL?list-type=2&max-keys=1000" | python3 -c '
import sys, urllib.parse, xml.etree.ElementTree as ET
ns = {"s": "http://s3.amazonaws.com/doc/2006-03-01/"}
root = ET.fromstring(sys.stdin.read())
items = root.findall("s:Contents", ns) or root.findall("Contents")
for c in items:
    get = lambda n: (c.find("s:" + n, ns) if c.find("s:" + n, ns) is not None else c.find(n)).text
    print(urllib.parse.quote(get("Key"), safe="/"), get("Size"), get("ETag"))
')
    [ -n "$listing" ] || fail "empty listing"
    while read -r enc size etag; do
        head=$(s3curl -f -I "$S3URL/$enc" | tr -d '\r')
        hsize=$(echo "$head" | awk 'tolower($1)=="content-length:" {print $2}')
        hetag=$(echo "$head" | awk 'tolower($1)=="etag:" {print $2}')
        eq "$size $etag" "$hsize $hetag" "HEAD of $enc"
        n=$((n + 1))
    done <<<"$listing"
    echo "$listing" | awk '{print $3}' | grep -q -- '-[0-9]*"$' || fail "no multipart object among $n"
}

# --- stress ---
t_many_small_files() {
    mkdir -p many; local i n=$SMALL_FILES
    for i in $(seq 1 "$n"); do echo "small file $i" >"many/f$i"; done
    eq "$n" "$(ls many | wc -l)" "listed"
    for i in $(seq 1 "$n"); do [ "$(cat "many/f$i")" = "small file $i" ] || fail "many/f$i"; done
    rm -r many
    [ ! -e many ] || fail "rm -r left the directory"
}
t_parallel_writers() {
    mkdir -p par "$L/par"; local w pids=()
    for w in 1 2 3 4 5 6; do
        (
            for i in $(seq 1 15); do
                head -c $(( (RANDOM % 200000) + 1 )) /dev/urandom >"$L/par/w$w-$i"
                cp "$L/par/w$w-$i" "par/w$w-$i"
            done
        ) &
        pids+=($!)
    done
    for w in "${pids[@]}"; do wait "$w" || fail "a writer failed"; done
    eq 90 "$(ls par | wc -l)" "files"
    diff -r "$L/par" par
}
make_tree() { # dir: a small source tree with nested dirs, odd names, empty files, a symlink
    local d=$1 i
    mkdir -p "$d/src/a/b" "$d/src/empty dir" "$d/docs"
    for i in $(seq 1 40); do head -c $((RANDOM % 30000)) /dev/urandom >"$d/src/a/f$i.bin"; done
    for i in $(seq 1 10); do echo "doc $i" >"$d/docs/readme $i.md"; done
    : >"$d/src/a/b/empty"; echo deep >"$d/src/a/b/deep.txt"
    chmod 600 "$d/docs/readme 1.md"; chmod 755 "$d/src/a/f1.bin"
    ln -s ../docs/readme\ 2.md "$d/src/link"
    touch -d "2015-06-07 08:09:10 UTC" "$d/docs/readme 3.md"
}
export -f make_tree
t_cp_r() {
    make_tree "$L/tree-cp"
    cp -r "$L/tree-cp" tree-cp
    diff -r "$L/tree-cp" tree-cp
}
t_rsync_a() {
    make_tree "$L/tree-rs"
    rsync -a "$L/tree-rs/" tree-rs/
    diff -r "$L/tree-rs" tree-rs
    eq 600 "$(stat -c %a "tree-rs/docs/readme 1.md")" "mode kept"
    eq 1433664550 "$(stat -c %Y "tree-rs/docs/readme 3.md")" "mtime kept"
    # A second rsync must find nothing to do: sizes, times, modes and links all agree.
    local changes; changes=$(rsync -a --itemize-changes "$L/tree-rs/" tree-rs/)
    eq "" "$changes" "changes on a second rsync"
}

