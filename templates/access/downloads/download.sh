{% autoescape off %}#!/bin/sh
# Downloads {{ model_name }} from the portal and checks every file (md5 and sha256).
#
#   sh download.sh [TARGET_FOLDER]        (default: the current folder)
#
# Files go to TARGET_FOLDER/{{ model }}/. The links in this script work until
# {{ expires_at }}. Interrupted? Run the script again: finished files are kept and a
# partial file continues where it stopped (a resume uses only the bytes still missing).
set -u

MODEL={{ model }}
MODEL_NAME={{ model_name_word }}
GRANTS_URL={{ grants_url }}
TARGET_FOLDER="${1:-.}"
DEST="$TARGET_FOLDER/$MODEL"

if command -v curl >/dev/null 2>&1; then
    FETCH=curl
elif command -v wget >/dev/null 2>&1; then
    FETCH=wget
else
    echo "download.sh: install curl or wget, then run this script again." >&2
    exit 1
fi

fail() {
    echo "download.sh: $1" >&2
    exit 1
}

explain() {  # $1: file name, $2: HTTP status of the failed request ("" if none)
    case "$2" in
        410) fail "the download links have expired or were replaced by newer ones. Create new links on $GRANTS_URL, download the new download.sh and run it here again: finished files are kept and partial ones resume." ;;
        403) fail "the portal refused $1: its downloads are used up, or your access was revoked or suspended, or the license changed and must be accepted again. See $GRANTS_URL." ;;
        404) fail "the portal does not know the link for $1. Download a fresh download.sh from $GRANTS_URL." ;;
        "" | 000) fail "could not download $1 (no answer from the server). Check the connection and run this script again to resume." ;;
        *) fail "could not download $1 (HTTP $2). Run this script again to resume; if it keeps failing, see $GRANTS_URL." ;;
    esac
}

size_of() {
    if [ -f "$1" ]; then wc -c < "$1" | tr -d ' '; else echo 0; fi
}

fetch() {  # $1: file name, $2: URL, $3: size in bytes
    out="$DEST/$1"
    have=$(size_of "$out")
    if [ "$have" -eq "$3" ]; then
        echo "$1: already downloaded"
        return 0
    fi
    if [ "$have" -gt "$3" ]; then
        rm -f "$out"
    fi
    echo "$1: downloading ($3 bytes)"
    if [ "$FETCH" = curl ]; then
        # -f: an error page is never written into the file; -C -: continue a partial file.
        status=$(curl -sS -f -L -C - -o "$out" -w '%{http_code}' "$2")
        rc=$?
    else
        log="$DEST/.wget-log"
        wget -nv -S --continue -O "$out" "$2" 2> "$log"
        rc=$?
        status=$(awk '$1 ~ /^HTTP\// { code = $2 } END { print code }' "$log")
        rm -f "$log"
    fi
    if [ "$rc" -ne 0 ]; then
        explain "$1" "$status"
    fi
    if [ "$(size_of "$out")" -ne "$3" ]; then
        fail "$1 has $(size_of "$out") bytes instead of $3. Run this script again to resume."
    fi
}

sha256_check() {  # reads "<sha256>  <name>" lines
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -c -
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 -c -
    else
        fail "install sha256sum (coreutils) or shasum (perl) to check the files."
    fi
}

mkdir -p "$DEST" || fail "cannot create the folder $DEST."
echo "Downloading $MODEL_NAME into $DEST"
{% for file in files %}fetch {{ file.name }} {{ file.url }} {{ file.size }}
{% endfor %}
cd "$DEST" || fail "cannot enter $DEST."
{% if has_checklist %}if command -v md5sum >/dev/null 2>&1; then
    echo "Checking md5 sums (checklist.chk)"
    md5sum -c checklist.chk || fail "md5 check failed: delete the files marked FAILED and run this script again."
else
    echo "md5sum not found: skipping checklist.chk (the sha256 check below covers every file)"
fi
{% endif %}echo "Checking sha256 sums"
{
{% for file in files %}    printf '%s  %s\n' {{ file.sha256 }} {{ file.name }}
{% endfor %}} | sha256_check || fail "sha256 check failed: delete the files marked FAILED and run this script again."

echo "Done: $MODEL_NAME is in $DEST"
{% endautoescape %}