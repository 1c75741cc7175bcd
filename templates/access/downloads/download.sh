{% autoescape off %}#!/bin/sh
# Downloads {{ model_name }} from the portal and checks every file (md5 and sha256).
#
#   sh download.sh [--format {{ formats_usage }}] [TARGET_FOLDER]        (default: the current folder)
#   curl -fsSL <this script's link> | sh -s -- [--format {{ formats_usage }}] [TARGET_FOLDER]
#
# Files go to TARGET_FOLDER/{{ model }}/.{% if has_hf %} --format meta (the default) fetches Meta's
# original checkpoint (consolidated.NN.pth, params.json, tokenizer.model); --format hf the
# same weights in transformers' layout, into {{ model }}/hf/ (load that folder with
# LlamaForCausalLM.from_pretrained); --format both fetches both.{% endif %} The links in this script work until
# {{ expires_at }}. Interrupted? Run the script again: finished files are kept and a
# partial file continues where it stopped (a resume uses only the bytes still missing).
# Nothing runs until the last line, so a script cut short in a pipe does nothing.
set -u

MODEL={{ model }}
MODEL_NAME={{ model_name_word }}
GRANTS_URL={{ grants_url }}

fail() {
    printf 'download.sh: %s\n' "$1" >&2
    exit 1
}

reason_of() {  # $1: URL. Prints the first line of the portal's plain-text answer to a refused link.
    # Asked again for one byte only: curl and wget do not keep an error's body when they resume a file.
    body="$DEST/.refusal"
    if [ "$FETCH" = curl ]; then
        answer=$(curl -sS -L -r 0-0 -o "$body" -w '%{http_code} %{content_type}' "$1" < /dev/null 2> /dev/null)
    else
        wget -q -S --content-on-error --header='Range: bytes=0-0' -O "$body" "$1" < /dev/null 2> "$body.log"
        answer=$(awk '$1 ~ /^HTTP\// { code = $2 } tolower($1) == "content-type:" { type = $2 } END { print code " " type }' "$body.log")
    fi
    case "$answer" in
        [45][0-9][0-9]\ text/plain*) sed -n 1p "$body" | tr -d '\000-\037\177' | cut -c 1-500 ;;
    esac
    rm -f "$body" "$body.log"
}

explain() {  # $1: file name, $2: URL, $3: HTTP status of the failed request ("" or 000 if none)
    case "$3" in
        "" | 000) fail "could not download $MODEL/$1 (no answer from the server). Check the connection and run this script again to resume." ;;
    esac
    # Only a lasting refusal is asked again for its reason: after a server error or a rate limit
    # the second request could succeed, and even one byte counts against the link's downloads.
    case "$3" in
        403 | 404 | 410)
            reason=$(reason_of "$2")
            if [ -n "$reason" ]; then fail "$MODEL/$1: refused ($3): $reason"; fi
            ;;
    esac
    case "$3" in
        410) fail "$MODEL/$1: refused (410): the download links have expired or were replaced by newer ones. Create new links on $GRANTS_URL, download the new download.sh and run it here again: finished files are kept and partial ones resume." ;;
        403) fail "$MODEL/$1: refused (403): its downloads are used up, or your access was revoked or suspended, or the license changed and must be accepted again. See $GRANTS_URL." ;;
        404) fail "$MODEL/$1: refused (404): the portal does not know this link. Download a fresh download.sh from $GRANTS_URL." ;;
        *) fail "could not download $MODEL/$1 (HTTP $3). Run this script again to resume; if it keeps failing, see $GRANTS_URL." ;;
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
        status=$(curl -sS -f -L -C - -o "$out" -w '%{http_code}' "$2" < /dev/null)
        rc=$?
    else
        log="$DEST/.wget-log"
        wget -nv -S --continue -O "$out" "$2" < /dev/null 2> "$log"
        rc=$?
        status=$(awk '$1 ~ /^HTTP\// { code = $2 } END { print code }' "$log")
        rm -f "$log"
        # wget -O creates the file before it knows the answer: leave no empty file behind a refusal.
        if [ "$rc" -ne 0 ] && [ "$(size_of "$out")" -eq 0 ]; then rm -f "$out"; fi
    fi
    if [ "$rc" -ne 0 ]; then
        explain "$1" "$2" "$status"
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

wanted() {  # $1: a file's format (meta or hf)
    [ "$FORMAT" = both ] || [ "$FORMAT" = "$1" ]
}

main() {
    TARGET_FOLDER=.
    FORMAT=meta
    while [ $# -gt 0 ]; do
        case "$1" in
            --format) [ $# -ge 2 ] || fail "--format needs a value: {{ formats_usage }}."; FORMAT="$2"; shift 2 ;;
            --format=*) FORMAT="${1#--format=}"; shift ;;
            -*) fail "unknown option $1. Usage: sh download.sh [--format {{ formats_usage }}] [TARGET_FOLDER]" ;;
            *) TARGET_FOLDER="$1"; shift ;;
        esac
    done
    case "$FORMAT" in
        {{ formats_case }}) ;;
        *) fail "--format $FORMAT: this model is published as {{ formats_usage }}." ;;
    esac
    DEST="$TARGET_FOLDER/$MODEL"
    if command -v curl > /dev/null 2>&1; then
        FETCH=curl
    elif command -v wget > /dev/null 2>&1; then
        FETCH=wget
    else
        fail "install curl or wget, then run this script again."
    fi
    mkdir -p "$DEST" || fail "cannot create the folder $DEST."
{% if has_hf %}    if wanted hf; then mkdir -p "$DEST/hf" || fail "cannot create the folder $DEST/hf."; fi
{% endif %}    echo "Downloading $MODEL_NAME ($FORMAT) into $DEST"
{% for file in files %}    if wanted {{ file.format }}; then fetch {{ file.name }} {{ file.url }} {{ file.size }}; fi
{% endfor %}    cd "$DEST" || fail "cannot enter $DEST."
{% if has_checklist %}    if ! wanted meta; then
        :
    elif command -v md5sum > /dev/null 2>&1; then
        echo "Checking md5 sums (checklist.chk)"
        md5sum -c checklist.chk || fail "md5 check failed: delete the files marked FAILED and run this script again."
    else
        echo "md5sum not found: skipping checklist.chk (the sha256 check below covers every file)"
    fi
{% endif %}    echo "Checking sha256 sums"
    {
{% for file in files %}        if wanted {{ file.format }}; then printf '%s  %s\n' {{ file.sha256 }} {{ file.name }}; fi
{% endfor %}    } | sha256_check || fail "sha256 check failed: delete the files marked FAILED and run this script again."
    echo "Done: $MODEL_NAME is in $DEST"
}

main "$@"
{% endautoescape %}