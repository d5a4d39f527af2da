// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Charges `feeBps` of every transfer between holders (burned): the recipient gets less.
contract FeeOnTransferToken is ERC20 {
    uint256 public immutable feeBps;

    constructor(uint256 feeBps_) ERC20("Fee on transfer", "FOT") {
        feeBps = feeBps_;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) return super._update(from, to, value);
        uint256 fee = value * feeBps / 10_000;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}

/// @notice Says yes to every transfer and moves nothing (`lies`), or says no (`refuses`).
contract DishonestToken is ERC20 {
    bool public lies;
    bool public refuses;

    constructor() ERC20("Dishonest", "LIE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBehaviour(bool lies_, bool refuses_) external {
        lies = lies_;
        refuses = refuses_;
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (refuses) return false;
        if (lies) return true;
        return super.transferFrom(from, to, value);
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (refuses) return false;
        return super.transfer(to, value);
    }
}
