#!/usr/bin/env bash
# Shared by VOC2007.sh and VOC2012.sh: download official PASCAL VOC archives (resumable), verify MD5, extract.
# Usage (through the wrappers): VOC20xx.sh [--root DIR] [--mirror URL] [--no-extract] [--delete-archives]
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--root DIR] [--mirror URL] [--no-extract] [--delete-archives] [-h]

Downloads ${VOC_NAME} (${VOC_FILES[*]}) into DIR (default: ~/data), verifies each
archive's MD5 and extracts it so that DIR/VOCdevkit/${VOC_YEAR_DIR} exists.
An interrupted download resumes where it stopped (curl -C - / wget -c).

  --root DIR          where archives go and are extracted (default: ~/data, or \$VOC_ROOT)
  --mirror URL        base URL tried first: URL/<archive name> (or \$VOC_MIRROR)
  --no-extract        download and verify only
  --delete-archives   remove each .tar after a successful extraction
  -h, --help          this text

Python equivalent: rssd download ${VOC_NAME,,} --root DIR
USAGE
}

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then md5 -q "$1"
  else python3 -c 'import hashlib,sys; print(hashlib.md5(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
  fi
}

# fetch URL DEST: resumable; returns curl/wget's status
fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fL --connect-timeout 20 -C - -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -c --tries=1 --timeout=20 -O "$2" "$1"
  else
    die "neither curl nor wget is installed"
  fi
}

voc_main() {
  local root="${VOC_ROOT:-$HOME/data}" mirror="${VOC_MIRROR:-}" extract=1 delete=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --root) [ $# -ge 2 ] || { usage >&2; die "--root needs a directory"; }; root="$2"; shift 2 ;;
      --root=*) root="${1#--root=}"; shift ;;
      --mirror) [ $# -ge 2 ] || { usage >&2; die "--mirror needs a URL"; }; mirror="$2"; shift 2 ;;
      --mirror=*) mirror="${1#--mirror=}"; shift ;;
      --no-extract) extract=0; shift ;;
      --delete-archives) delete=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; echo "$(basename "$0"): unknown argument: $1" >&2; exit 2 ;;
    esac
  done
  mkdir -p "$root" || die "cannot create $root"
  local i file md5 dest got ok url
  for i in "${!VOC_FILES[@]}"; do
    file="${VOC_FILES[$i]}"; md5="${VOC_MD5S[$i]}"; dest="$root/$file"
    if [ -f "$root/VOCdevkit/.extracted-$file" ]; then echo "$file: already extracted"; continue; fi
    if [ -f "$dest" ] && [ "$(md5_of "$dest")" = "$md5" ]; then
      echo "$file: present, checksum OK"
    else
      ok=0
      for url in ${mirror:+"${mirror%/}/$file"} "${VOC_URL_DIR}/$file" "https://pjreddie.com/media/files/$file"; do
        echo "$file: downloading $url"
        if fetch "$url" "$dest.part"; then ok=1; break; fi
        echo "$file: $url failed" >&2
      done
      if [ "$ok" != 1 ]; then
        die "could not download $file (are you offline?). Download it by hand from ${VOC_URL_DIR}/$file into $root and run this script again: the MD5 ($md5) is checked and the archive extracted."
      fi
      got="$(md5_of "$dest.part")"
      if [ "$got" != "$md5" ]; then
        rm -f "$dest.part"
        die "$file: checksum mismatch (MD5 $got, expected $md5); removed the download, run again"
      fi
      mv "$dest.part" "$dest"
      echo "$file: checksum OK"
    fi
    if [ "$extract" = 1 ]; then
      echo "$file: extracting into $root"
      tar -xf "$dest" -C "$root" --no-same-owner
      mkdir -p "$root/VOCdevkit" && echo "$md5" > "$root/VOCdevkit/.extracted-$file"
      if [ "$delete" = 1 ]; then rm -f "$dest"; fi
    fi
  done
  [ "$extract" = 1 ] && echo "done: $root/VOCdevkit/${VOC_YEAR_DIR}"
  return 0
}
