#!/usr/bin/env bash
# PASCAL VOC2007 trainval + test: download (resumable), verify MD5, extract to ROOT/VOCdevkit/VOC2007.
# Run with --help for the options; `rssd download voc2007` is the Python equivalent.
set -euo pipefail
VOC_NAME="VOC2007"
VOC_YEAR_DIR="VOC2007"
VOC_URL_DIR="http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
VOC_FILES=("VOCtrainval_06-Nov-2007.tar" "VOCtest_06-Nov-2007.tar")
VOC_MD5S=("c52e279531787c972589f7e41ab4ae64" "b6e924de25625d8de591ea690078ad9f")
# shellcheck source=_voc_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_voc_common.sh"
voc_main "$@"
